/* LD_PRELOAD library: the process (and its children) sees an AVX2-only x86-64 CPU.
 *
 *   gcc -shared -fPIC -O2 -o avx2_only.so tools/avx2_only.c
 *   LD_PRELOAD=$PWD/avx2_only.so python ...
 *
 * For measuring onnxruntime's AVX2 kernels (and ours, by detection) on an AVX-512 host: MLAS picks
 * its kernels from CPUID once, when the library loads, and has no switch of its own. Linux's CPUID
 * faulting (`arch_prctl(ARCH_SET_CPUID, 0)`, /proc/cpuinfo flag `cpuid_fault`) makes every CPUID
 * instruction of this thread and of the threads it starts raise SIGSEGV; the handler below runs
 * the real CPUID and clears the AVX-512, AVX-VNNI, AVX-IFMA, AVX-NE-CONVERT, AVX10 and AMX bits,
 * as an AVX2 CPU (Haswell to Comet Lake, Zen 1 to Zen 3) reports them. XCR0 (read by XGETBV, which
 * cannot be trapped) still says the OS saves the AVX-512 state; code checks both, so the cleared
 * CPUID bit decides. Only CPUID changes: the cores still run at this host's speed, with its caches.
 *
 * A program that installs its own SIGSEGV handler afterwards (rustc and rustdoc do) dies on its
 * next CPUID: build before preloading, run only the built programs under it. Rust's standard
 * library leaves an existing handler in place, so programs built with it are fine.
 *
 * The constructor runs before the program's own initialisers (LD_PRELOAD libraries load first),
 * but after the dynamic loader, so glibc's string functions may still use AVX-512. If the kernel
 * refuses CPUID faulting the library prints why and exits with status 3, so nothing is measured
 * with the full instruction set by mistake.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

/* Leaf 7 subleaf 0. EBX: AVX512F, DQ, IFMA, PF, ER, CD, BW, VL. */
#define L7_EBX (BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31))
/* ECX: AVX512_VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ. */
#define L7_ECX (BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14))
/* EDX: AVX512_4VNNIW, 4FMAPS, VP2INTERSECT, AMX_BF16, AVX512_FP16, AMX_TILE, AMX_INT8. */
#define L7_EDX (BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25))
/* Leaf 7 subleaf 1. EAX: AVX_VNNI, AVX512_BF16, AMX_FP16, AVX_IFMA. */
#define L7S1_EAX (BIT(4) | BIT(5) | BIT(21) | BIT(23))
/* EDX: AVX_VNNI_INT8, AVX_NE_CONVERT, AVX10. */
#define L7S1_EDX (BIT(4) | BIT(5) | BIT(19))

static long cpuid_faulting(int on) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1); }

static void die(const char *why) {
    /* fputs is not async-signal-safe; write(2) is. */
    static const char prefix[] = "avx2_only: ";
    (void)!write(2, prefix, sizeof prefix - 1);
    (void)!write(2, why, strlen(why));
    (void)!write(2, "\n", 1);
    _exit(3);
}

static void on_sigsegv(int sig, siginfo_t *info, void *context) {
    (void)info;
    greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)regs[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) {
        /* A real fault: let it happen again with the default action. */
        signal(sig, SIG_DFL);
        return;
    }
    uint32_t leaf = (uint32_t)regs[REG_RAX], sub = (uint32_t)regs[REG_RCX];
    uint32_t a, b, c, d;
    if (cpuid_faulting(0) != 0) die("cannot leave CPUID faulting in the handler");
    __cpuid_count(leaf, sub, a, b, c, d);
    if (cpuid_faulting(1) != 0) die("cannot re-enter CPUID faulting in the handler");
    if (leaf == 7 && sub == 0) {
        b &= ~L7_EBX;
        c &= ~L7_ECX;
        d &= ~L7_EDX;
    } else if (leaf == 7 && sub == 1) {
        a &= ~L7S1_EAX;
        d &= ~L7S1_EDX;
    } else if (leaf == 0x24) {
        a = b = c = d = 0; /* AVX10 converged vector ISA leaf */
    }
    regs[REG_RAX] = a;
    regs[REG_RBX] = b;
    regs[REG_RCX] = c;
    regs[REG_RDX] = d;
    regs[REG_RIP] += 2;
}

__attribute__((constructor)) static void avx2_only_init(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsegv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0) die("sigaction(SIGSEGV) failed");
    if (cpuid_faulting(1) != 0)
        die("arch_prctl(ARCH_SET_CPUID) failed: this kernel or CPU has no CPUID faulting "
            "(no cpuid_fault in /proc/cpuinfo); cannot hide AVX-512");
}
