# Startup of the benchmark guest (qemu-system-s390x -kernel start state:
# z/Architecture, EA|BA, DAT off, interrupts off, prefix 0).
        .section .text.start,"ax"
        .globl _start
_start:
        larl    %r15,__stack_top
        aghi    %r15,-160
        larl    %r2,__bss_start
        larl    %r3,__bss_end
1:      clgr    %r2,%r3
        jhe     2f
        mvi     0(%r2),0
        la      %r2,1(%r2)
        j       1b
2:      brasl   %r14,main
        .globl  bench_exit
bench_exit:
        # disabled wait at an address ending in 0xfff: QEMU's quiesce, exit 0
        larl    %r1,exit_psw
        lpswe   0(%r1)

        .section .data
        .align  8
exit_psw:
        .quad   0x0002000180000000, 0x0000000000000fff

        .section .note.GNU-stack,"",@progbits
