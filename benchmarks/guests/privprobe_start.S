# External interruption handler and helpers of privprobe.c (program checks
# and SVCs go to the handlers of traces/guests/start.S).
        .text
        .globl  set_ext_handler, do_svc, do_invalid
set_ext_handler:
        larl    %r1,ext_new
        mvc     0x1b0(16,%r0),0(%r1)
        br      %r14
do_svc:
        svc     42
        br      %r14
do_invalid:
        .long   0x00000000              # two 2-byte operation exceptions in a row
        br      %r14
# External interruption: record code, parameter and old PSW, then resume
# with external interruptions disabled again (old PSW bit 7 cleared).
ext_handler:
        stmg    %r0,%r15,0x200
        larl    %r1,ext_psw
        mvc     0(16,%r1),0x130
        larl    %r1,ext_code
        mvc     0(2,%r1),0x86
        larl    %r1,ext_param
        mvc     0(4,%r1),0x80
        larl    %r1,ext_count
        l       %r2,0(%r1)
        ahi     %r2,1
        st      %r2,0(%r1)
        ni      0x130,0xfe
        lmg     %r0,%r15,0x200
        lpswe   0x130

        .data
        .align  8
ext_new:        .quad 0x0000000180000000, ext_handler
        .globl  ext_psw, ext_param, ext_count, ext_code
ext_psw:        .quad 0, 0
ext_param:      .long 0
ext_count:      .long 0
ext_code:       .short 0
        .section .note.GNU-stack,"",@progbits
