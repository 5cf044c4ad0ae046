// SPDX-License-Identifier: BSL-1.0
// The smallest child: no libc, no loader, no startup code; its entry point makes the exit_group
// system call. Spawning it costs what the kernel's execve and the spawn method cost, nothing more.
// x86-64 Linux only; linked with -nostdlib -static (see meson.build).
extern "C" [[noreturn]] void _start() {
  asm volatile("mov $231, %%eax\n\t"  // SYS_exit_group
               "xor %%edi, %%edi\n\t"  // status 0
               "syscall"
               :
               :
               : "rax", "rdi", "memory");
  __builtin_unreachable();
}
