# cpu/emu: the software x86-64 backend (see src/cpu/emu/emu_priv.h).
OBJS += src/cpu/emu/emu.o
OBJS += src/cpu/emu/exec.o
OBJS += src/cpu/emu/mmu.o
OBJS += src/cpu/emu/exc.o
OBJS += src/cpu/emu/sse.o
OBJS += src/cpu/emu/x87.o
OBJS += src/cpu/emu/platform.o
