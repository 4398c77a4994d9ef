/* The serial console on the terminal: input from a host fd into COM1, raw
 * terminal mode while the VM runs, Ctrl-A x to stop the VM, and
 * SIGINT/SIGTERM/SIGHUP as a clean stop. */
#ifndef TARN_CONSOLE_H
#define TARN_CONSOLE_H

struct vm;

/* Attach in_fd (may be -1) as the guest's serial input and route the stop
 * signals through the VM's event loop. 0 or -errno. */
int console_attach(struct vm *vm, int in_fd) __attribute__((warn_unused_result));
/* Restore the terminal (also done at exit). */
void console_detach(void);

#endif
