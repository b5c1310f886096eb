# The sample's guest: a boot sector, loaded at 0x7c00 in real mode.
# It enters 32-bit flat protected mode, sets the first byte of every page of its working set to 1, then increments
# those bytes page by page, pass after pass, forever. After each burst of pages it writes to port 0x80 (where the
# VMM's run loop may pause it) and paces itself with rdtsc; after each pass it writes a byte to the serial port.
# Invariant whenever the vCPU is stopped: the first bytes of the working set's pages form one run of v+1 followed
# by one run of v (mod 256); a page the migration lost shows up as a second step.
# Parameters, patched by the VMM at fixed offsets (Params, at 0x1E0 in the sector): first page, page count, burst, pace cycles.
#
# Build: as --32 -o boot.o boot.S && ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o boot.bin boot.o
        .intel_syntax noprefix
        .code16
        .globl _start
_start:
        cli
        xor ax, ax
        mov ds, ax
        lgdt [gdt_desc]
        mov eax, cr0
        or eax, 1
        mov cr0, eax
        .byte 0x66, 0xEA                 # ljmp 0x08:pm32, 32-bit offset
        .long pm32
        .word 0x08

        .code32
pm32:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov esp, 0x7000
        mov ecx, [page_count]
        mov edi, [first_page]
        shl edi, 12
init:
        mov byte ptr [edi], 1
        add edi, 4096
        dec ecx
        jnz init
pass:
        mov edi, [first_page]
        shl edi, 12
        mov ecx, [page_count]
burst:
        mov ebx, [burst_pages]
step:
        inc byte ptr [edi]
        add edi, 4096
        dec ecx
        jz pass_done
        dec ebx
        jnz step
        out 0x80, al                     # end of a burst: the VMM may pause here
        call pace
        jmp burst
pass_done:
        mov al, 0x2e                     # '.'
        mov dx, 0x3f8
        out dx, al
        out 0x80, al
        call pace
        jmp pass

pace:                                    # spin until pace_cycles have passed since the last call's end
        mov esi, [pace_cycles]
        test esi, esi
        jz paced
        rdtsc
        mov ebp, eax
spin:
        rdtsc
        sub eax, ebp
        cmp eax, esi
        jb spin
paced:
        ret

        .p2align 3
gdt:
        .quad 0
        .quad 0x00CF9A000000FFFF         # 0x08: code, flat 4 GiB
        .quad 0x00CF92000000FFFF         # 0x10: data, flat 4 GiB
gdt_desc:
        .word 23
        .long gdt

        .org 0x1E0
Params:
first_page:  .long 256
page_count:  .long 1024
burst_pages: .long 64
pace_cycles: .long 0

        .org 510
        .word 0xAA55
