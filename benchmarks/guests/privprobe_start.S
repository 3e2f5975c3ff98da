# External interruption handler and helpers of privprobe.c (program checks
# and SVCs go to the handlers of traces/guests/start.S).
        .text
        .globl  set_ext_handler, do_svc, do_invalid, psw_probe, odd_target
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
# psw_probe(psw): LPSWE of the 16 bytes at psw, which must end in a
# program interruption; its handler records the ILC+code word and the old
# PSW (probe_pgm_word, probe_old_psw) and returns to psw_probe's caller with
# start.S's program-new PSW back in place (its handler would resume at the
# old PSW, which for an odd address would fault again forever).
psw_probe:
        stmg    %r6,%r15,48(%r15)
        larl    %r1,saved_pgm_new
        mvc     0(16,%r1),0x1d0
        larl    %r1,probe_pgm_new
        mvc     0x1d0(16,%r0),0(%r1)
        larl    %r1,probe_sp
        stg     %r15,0(%r1)
        lpswe   0(%r2)
probe_pgm:
        larl    %r1,probe_pgm_word
        mvc     0(4,%r1),0x8c
        larl    %r1,probe_old_psw
        mvc     0(16,%r1),0x150
        larl    %r1,saved_pgm_new
        mvc     0x1d0(16,%r0),0(%r1)
        larl    %r1,probe_sp
        lg      %r15,0(%r1)
        lmg     %r6,%r15,48(%r15)
        br      %r14
# the PSWs of privprobe.c point one byte past this: zeros, so running them
# would be an operation exception
        .align  8
odd_target:
        .long   0, 0
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
        .align  8
probe_pgm_new:  .quad 0x0000000180000000, probe_pgm
saved_pgm_new:  .quad 0, 0
probe_sp:       .quad 0
        .globl  probe_old_psw, probe_pgm_word
probe_old_psw:  .quad 0, 0
probe_pgm_word: .long 0
        .section .note.GNU-stack,"",@progbits
