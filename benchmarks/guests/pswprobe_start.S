# Helpers of pswprobe.c: each psw_case ends in a program interruption (or,
# for the valid LPSW cases, at lpsw_landing), which returns to psw_case's
# caller with start.S's program-new PSW back in place.  Running the program
# handler of start.S instead would resume at the old PSW, which for an odd
# or invalid PSW faults again forever.
#ifndef WAIT_ADDR
#define WAIT_ADDR 0xfff                 /* quiesce: QEMU exits with status 0 */
#endif
        .text
        .globl  psw_case, probe_basr_insn, odd_target, bad_target, lpsw_landing, lpsw_link, probe_svc_insn
        .globl  probe_lpsw_insn, probe_stosm_insn, probe_stosm0_insn, lpsw_exit
# psw_case(kind, arg): r2 = kind, r3 = an address (see pswprobe.c)
psw_case:
        stmg    %r6,%r15,48(%r15)
        larl    %r1,saved_pgm_new
        mvc     0(16,%r1),0x1d0
        larl    %r1,probe_pgm_new
        mvc     0x1d0(16,%r0),0(%r1)
        larl    %r1,probe_sp
        stg     %r15,0(%r1)
        sllg    %r2,%r2,2               # 4-byte branch table entries
        larl    %r1,kinds
        b       0(%r2,%r1)
kinds:  j       k_br
        j       k_basr
        j       k_bc
        j       k_svc
        j       k_lpswe
        j       k_lpsw
        j       k_ext
        j       k_stosm
k_br:   br      %r3
k_basr:
probe_basr_insn:
        basr    %r4,%r3
        j       probe_return
k_bc:   bc      15,0(%r3)
k_svc:
probe_svc_insn:
        svc     7
        j       probe_return
k_lpswe:
        lpswe   0(%r3)
k_lpsw:
probe_lpsw_insn:
        lpsw    0(%r3)
        j       probe_return
k_ext:  # a service signal is pending (every console line is a SERVC)
probe_stosm_insn:
        stosm   probe_tmp,0x01
        j       probe_return
k_stosm:  # bit 0 into the PSW, out again, then an operation exception
probe_stosm0_insn:
        stosm   probe_tmp,0x80
        stnsm   probe_tmp,0x7f
        .long   0
probe_pgm:
        stmg    %r0,%r15,0x200
        larl    %r1,probe_regs
        mvc     0(128,%r1),0x200
        larl    %r1,probe_pgm_word
        mvc     0(4,%r1),0x8c
        larl    %r1,probe_old_psw
        mvc     0(16,%r1),0x150
probe_return:
        larl    %r1,saved_pgm_new
        mvc     0x1d0(16,%r0),0(%r1)
        larl    %r1,probe_sp
        lg      %r15,0(%r1)
        lmg     %r6,%r15,48(%r15)
        br      %r14
# where the valid LPSW cases continue, in the addressing mode they loaded:
# the condition code and BASR's link (bit 32 set in the 31-bit mode) show it
lpsw_landing:
        ipm     %r0
        basr    %r1,0
lpsw_link:
        sam64
        larl    %r4,lpsw_seen
        stg     %r0,0(%r4)
        stg     %r1,8(%r4)
        j       probe_return
# the odd PSWs point one byte past this: zeros, so running them would be an
# operation exception (QEMU 7.2 does run them)
        .align  8
odd_target:
        .long   0, 0
# the PSWs with invalid mask bits point here: an operation exception if the
# PSW were taken as valid
bad_target:
        .long   0, 0
# ends the run with LPSW of the 8-byte disabled-wait PSW at exit_short
lpsw_exit:
        larl    %r1,exit_short
        lpsw    0(%r1)

        .data
        .align  8
exit_short:     .long   0x000a0000, WAIT_ADDR    # bit 12, wait; 24-bit address
probe_pgm_new:  .quad 0x0000000180000000, probe_pgm
saved_pgm_new:  .quad 0, 0
probe_sp:       .quad 0
probe_tmp:      .byte 0
        .align  8
        .globl  probe_old_psw, probe_pgm_word, probe_regs, lpsw_seen
probe_old_psw:  .quad 0, 0
probe_regs:     .fill 16, 8, 0
lpsw_seen:      .quad 0, 0
probe_pgm_word: .long 0
        .section .note.GNU-stack,"",@progbits
