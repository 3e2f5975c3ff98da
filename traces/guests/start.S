# Startup for the zpci-emu bare-metal guests (qemu-system-s390x -kernel).
# QEMU's ELF IPL gives: z/Architecture mode, PSW mask EA|BA (64-bit
# addressing), DAT off, all interruptions disabled, key 0, supervisor state,
# prefix 0, PSW address = ELF entry.
        .section .text.start,"ax"
        .globl _start
_start:
        larl    %r15,__stack_top
        aghi    %r15,-160               # first ABI stack frame
        xc      0(160,%r15),0(%r15)
        # clear .bss (byte loop, tiny and obviously correct)
        larl    %r2,__bss_start
        larl    %r3,__bss_end
1:      clgr    %r2,%r3
        jhe     2f
        mvi     0(%r2),0
        la      %r2,1(%r2)
        j       1b
2:      # program-check new PSW (lowcore 0x1d0): 64-bit, everything disabled
        larl    %r1,pgm_new_psw
        mvc     0x1d0(16,%r0),0(%r1)
        # SVC new PSW (lowcore 0x1c0): the way back from problem state
        larl    %r1,svc_new_psw
        mvc     0x1c0(16,%r0),0(%r1)
        brasl   %r14,main
        # fall through: main returned
        .globl  qemu_exit
qemu_exit:
        # Disabled-wait PSW whose address ends in 0xfff: QEMU treats it as
        # "signal quiesce" and shuts down cleanly (exit status 0).
        larl    %r1,exit_psw
        lpswe   0(%r1)

# Program interruption handler: record ILC+code, count, resume at the old
# PSW.  QEMU advances the old PSW past the instruction for every code that
# is not nullifying (privileged 0x02, specification 0x06, operand 0x15 ...),
# so the program continues after the failing instruction with the condition
# code it had before.  A nullifying exception would retry forever: after
# PGM_LIMIT interruptions the handler gives up and calls pgm_fatal (C, on
# its own stack), which prints one line and quiesces.
        .set    PGM_LIMIT,4096
pgm_handler:
        stmg    %r0,%r15,0x200          # lowcore scratch (0x200-0x27f)
        l       %r1,0x8c                # ILC (0x8d) + program interruption code (0x8e)
        larl    %r2,pgm_code
        st      %r1,0(%r2)
        larl    %r2,pgm_count
        l       %r3,0(%r2)
        ahi     %r3,1
        st      %r3,0(%r2)
        larl    %r2,pgm_old_psw
        mvc     0(16,%r2),0x150         # program old PSW
        chi     %r3,PGM_LIMIT
        jh      3f
        lmg     %r0,%r15,0x200
        lpswe   0x150
3:      larl    %r15,__pgm_stack_top
        aghi    %r15,-160
        brasl   %r14,pgm_fatal          # does not return
        j       qemu_exit

# to_problem_state(): return to the caller in problem state (PSW bit 15),
# everything else as before.  to_supervisor_state(): SVC 0, whose handler
# clears the problem-state bit of the SVC old PSW and resumes there.
        .globl  to_problem_state, to_supervisor_state
to_problem_state:
        larl    %r1,problem_psw
        stg     %r14,8(%r1)
        lpswe   0(%r1)
to_supervisor_state:
        svc     0
        br      %r14
svc_handler:
        ni      0x141,0xfe              # SVC old PSW: clear bit 15 (problem state)
        lpswe   0x140

        .section .data
        .align  8
svc_new_psw:
        .quad   0x0000000180000000, svc_handler
problem_psw:
        .quad   0x0001000180000000, 0
pgm_new_psw:
        .quad   0x0000000180000000, pgm_handler
exit_psw:
        .quad   0x0002000180000000, 0x0000000000000fff   # W bit, EA|BA
        .globl  pgm_code, pgm_count, pgm_old_psw
        .align  8
pgm_old_psw:    .quad 0,0
pgm_code:       .long 0
pgm_count:      .long 0

        .section .note.GNU-stack,"",@progbits
