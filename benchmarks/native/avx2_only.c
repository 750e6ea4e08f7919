/* avx2_only.so: this process sees an AVX2-only x86-64 CPU (no AVX512, VNNI, BF16 or AMX) and runs at native speed.
 *
 * Loaded with LD_PRELOAD; built and used by benchmarks/_cpuid_mask.py. Linux's CPUID faulting (ARCH_SET_CPUID; the
 * CPU's `cpuid_fault` flag) turns each CPUID instruction into a SIGSEGV. The handler runs the real CPUID, clears the
 * bits of the masked instruction sets and steps over the instruction, so libraries that pick kernels by CPUID
 * (PyTorch, oneDNN, onnxruntime's MLAS, OpenVINO) pick their AVX2 ones. Opening /proc/cpuinfo gives the same text
 * without the masked flags, so code that reads flags there (segzoo, lscpu) agrees with the kernels.
 *
 * Cores, caches and clocks stay the host's: this stands in for an AVX2-only CPU, it does not measure one. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define ARCH_SET_CPUID 0x1012
#define BIT(n) (1u << (n))

static struct sigaction chained; /* a SIGSEGV handler the program installed after us */
static int active;

static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
}

static void mask(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (leaf == 7 && sub == 0) {
        /* EBX: AVX512 F, DQ, IFMA, PF, ER, CD, BW, VL */
        r[1] &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        /* ECX: AVX512 VBMI, VBMI2, GFNI, VAES, VPCLMULQDQ, AVX512 VNNI, BITALG, VPOPCNTDQ */
        r[2] &= ~(BIT(1) | BIT(6) | BIT(8) | BIT(9) | BIT(10) | BIT(11) | BIT(12) | BIT(14));
        /* EDX: AVX512 4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512-FP16, AMX-TILE, AMX-INT8 */
        r[3] &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && sub == 1) {
        /* EAX: AVX-VNNI, AVX512-BF16, AMX-FP16, AVX-IFMA; EDX: AVX-VNNI-INT8, AVX-NE-CONVERT, AMX-COMPLEX,
         * AVX-VNNI-INT16, AVX10 */
        r[0] &= ~(BIT(4) | BIT(5) | BIT(21) | BIT(23));
        r[3] &= ~(BIT(4) | BIT(5) | BIT(8) | BIT(10) | BIT(19));
    } else if (leaf == 0xd && sub == 0) {
        r[0] &= ~(BIT(5) | BIT(6) | BIT(7) | BIT(17) | BIT(18)); /* XSAVE state of AVX512 and AMX */
    } else if (leaf == 0x1d || leaf == 0x1e || leaf == 0x24) {
        r[0] = r[1] = r[2] = r[3] = 0; /* AMX tiles, AVX10 */
    }
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *g = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)g[REG_RIP];
    if (info->si_code == SI_KERNEL && ip[0] == 0x0f && ip[1] == 0xa2) {
        uint32_t r[4], leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX];
        real_cpuid(leaf, sub, r);
        mask(leaf, sub, r);
        g[REG_RAX] = r[0], g[REG_RBX] = r[1], g[REG_RCX] = r[2], g[REG_RDX] = r[3];
        g[REG_RIP] += 2;
        return;
    }
    if ((chained.sa_flags & SA_SIGINFO) && chained.sa_sigaction) {
        chained.sa_sigaction(sig, info, context);
    } else if (chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN) {
        chained.sa_handler(sig);
    } else {
        signal(SIGSEGV, SIG_DFL); /* a real fault: returning re-runs the instruction, which now kills as before */
    }
}

/* A SIGSEGV handler the program installs (Python's faulthandler, say) is kept and called for faults that are not
 * CPUID; ours stays first. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    static int (*real)(int, const struct sigaction *, struct sigaction *);
    if (!real) real = dlsym(RTLD_NEXT, "sigaction");
    if (!active || sig != SIGSEGV) return real(sig, act, old);
    if (old) *old = chained;
    if (act) chained = *act;
    return 0;
}

static int masked_flag(const char *flag, size_t n) {
    static const char *prefixes[] = {"avx512", "amx", "avx_vnni", "avx_ifma", "avx_ne_convert", "avx10"};
    static const char *names[] = {"gfni", "vaes", "vpclmulqdq"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (n >= strlen(prefixes[i]) && !strncmp(flag, prefixes[i], strlen(prefixes[i]))) return 1;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (n == strlen(names[i]) && !strncmp(flag, names[i], n)) return 1;
    return 0;
}

/* /proc/cpuinfo without the masked flags, in a memory file; -1 (errno set) where it cannot be made. */
static int masked_cpuinfo(int (*real_open)(const char *, int, ...)) {
    int in = real_open("/proc/cpuinfo", O_RDONLY | O_CLOEXEC), out = memfd_create("cpuinfo", MFD_CLOEXEC);
    FILE *src = in < 0 ? NULL : fdopen(in, "r");
    if (!src || out < 0) {
        if (src) fclose(src); else if (in >= 0) close(in);
        if (out >= 0) close(out);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, src)) > 0) {
        if (strncmp(line, "flags", 5) != 0 || !strchr(line, ':')) {
            if (write(out, line, len) != len) break;
            continue;
        }
        char *colon = strchr(line, ':') + 1, *p = colon;
        if (write(out, line, colon - line) < 0) break;
        while (*p) {
            char *start = p + strspn(p, " \t\n");
            size_t n = strcspn(start, " \t\n");
            if (n == 0) break;
            if (!masked_flag(start, n) && (write(out, " ", 1) < 0 || write(out, start, n) < 0)) break;
            p = start + n;
        }
        if (write(out, "\n", 1) < 0) break;
    }
    free(line);
    fclose(src);
    lseek(out, 0, SEEK_SET);
    return out;
}

#define OPEN_WRAPPER(name, ...)                                                                  \
    int name(__VA_ARGS__, int flags, ...) {                                                       \
        static int (*real)(ARGS_##name);                                                         \
        if (!real) real = dlsym(RTLD_NEXT, #name);                                                \
        va_list ap;                                                                              \
        va_start(ap, flags);                                                                     \
        mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;                  \
        va_end(ap);                                                                              \
        if (active && !strcmp(path, "/proc/cpuinfo") && !(flags & (O_WRONLY | O_RDWR)))          \
            return masked_cpuinfo(OPEN_OF_##name);                                               \
        return CALL_##name;                                                                      \
    }

static int plain_open(const char *path, int flags, ...) {
    return (int)syscall(SYS_openat, AT_FDCWD, path, flags, 0);
}

#define ARGS_open const char *, int, ...
#define ARGS_open64 const char *, int, ...
#define ARGS_openat int, const char *, int, ...
#define ARGS_openat64 int, const char *, int, ...
#define OPEN_OF_open plain_open
#define OPEN_OF_open64 plain_open
#define OPEN_OF_openat plain_open
#define OPEN_OF_openat64 plain_open
#define CALL_open real(path, flags, mode)
#define CALL_open64 real(path, flags, mode)
#define CALL_openat real(dirfd, path, flags, mode)
#define CALL_openat64 real(dirfd, path, flags, mode)
OPEN_WRAPPER(open, const char *path)
OPEN_WRAPPER(open64, const char *path)
OPEN_WRAPPER(openat, int dirfd, const char *path)
OPEN_WRAPPER(openat64, int dirfd, const char *path)

#define FOPEN_WRAPPER(name)                                                                      \
    FILE *name(const char *path, const char *how) {                                              \
        static FILE *(*real)(const char *, const char *);                                        \
        if (!real) real = dlsym(RTLD_NEXT, #name);                                                \
        if (active && !strcmp(path, "/proc/cpuinfo") && how[0] == 'r' && !strchr(how, '+')) {    \
            int fd = masked_cpuinfo(plain_open);                                                 \
            return fd < 0 ? NULL : fdopen(fd, "r");                                              \
        }                                                                                        \
        return real(path, how);                                                                  \
    }
FOPEN_WRAPPER(fopen)
FOPEN_WRAPPER(fopen64)

__attribute__((constructor)) static void start(void) {
    static int (*real)(int, const struct sigaction *, struct sigaction *);
    real = dlsym(RTLD_NEXT, "sigaction");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (real(SIGSEGV, &sa, &chained) != 0 || syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr, "avx2_only.so: this CPU or kernel cannot fault on CPUID (no cpuid_fault flag); "
                        "refusing to run unmasked\n");
        _exit(3);
    }
    active = 1;
}
