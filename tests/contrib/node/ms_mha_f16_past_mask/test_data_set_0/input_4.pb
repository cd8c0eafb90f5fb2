
Battention_biasJ=:(9 ©H¸Õ8Ç:|·ü,T¯å: