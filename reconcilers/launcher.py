"""The no-new-privileges launcher: a tiny static program a site's service starts its command through.

A Swarm service cannot ask for `no-new-privileges` on this engine (the service API has it from version 1.46;
Docker 20.10 speaks 1.41), and without it a setuid program in a site's image (`su`, `passwd`, `mount`...)
still runs as root, even with every capability dropped. The launcher does what `--security-opt
no-new-privileges` would: `prctl(PR_SET_NO_NEW_PRIVS, 1)`, then `execve(argv[1], argv + 1, envp)`, so the
site's command and everything it starts carry NoNewPrivs: 1 and setuid and setgid bits are ignored.

It is machine code Director writes itself (no compiler, no libc, any image): an ELF header around the
instructions below, assembled once with `llvm-mc` and checked by the tests, which run it. If the prctl or
the exec fails it says so on stderr and exits 127, never running the command without the bit.

x86-64:                                       aarch64:
    mov edi, 38          ; PR_SET_NO_NEW_PRIVS    mov x0, #38
    mov esi, 1                                    mov x1, #1
    xor edx, edx                                  mov x2, #0
    xor r10d, r10d                                mov x3, #0
    xor r8d, r8d                                  mov x4, #0
    mov eax, 157         ; prctl                  mov x8, #167
    syscall                                       svc #0
    test eax, eax                                 cbnz x0, fail
    jnz fail                                      ldr x9, [sp]
    mov rcx, [rsp]       ; argc                   add x1, sp, #16
    lea rsi, [rsp+16]    ; argv + 1               ldr x0, [x1]
    mov rdi, [rsi]       ; argv[1]                add x2, x1, x9, lsl #3
    lea rdx, [rsp+rcx*8+16]  ; envp               mov x8, #221
    mov eax, 59          ; execve                 svc #0
    syscall                                   fail:
  fail:                                           mov x0, #2
    mov edi, 2                                    adr x1, message
    lea rsi, [rip+message]                        mov x2, #67
    mov edx, 67                                   mov x8, #64
    mov eax, 1           ; write                  svc #0
    syscall                                       mov x0, #127
    mov edi, 127                                  mov x8, #93
    mov eax, 60          ; exit                   svc #0
    syscall                                   message: (as on the left)
  message: .ascii "director: the no-new-privileges launcher could not run its command\\n"
"""

from __future__ import annotations

import os
import platform
import struct
import tempfile
from pathlib import Path

from controller.types import PermanentError

# Where a site's container finds it: a read-only bind mount, outside every directory an image uses.
LAUNCHER_TARGET = "/.director/no-new-privs"

MESSAGE = b"director: the no-new-privileges launcher could not run its command\n"
# The instructions, ending where MESSAGE begins (both encode its offset and length).
_CODE = {
    "x86_64": bytes.fromhex(
        "bf26000000be0100000031d24531d24531c0b89d0000000f0585c07518488b0c24488d742410488b3e488d54cc10"
        "b83b0000000f05bf02000000488d3518000000ba43000000b8010000000f05bf7f000000b83c0000000f05"
    ),
    "aarch64": bytes.fromhex(
        "c00480d2210080d2020080d2030080d2040080d2e81480d2010000d4e00000b5e90340f9e1430091200040f9220c098b"
        "a81b80d2010000d4400080d2e1000010620880d2080880d2010000d4e00f80d2a80b80d2010000d4"
    ),
}
_ELF_MACHINE = {"x86_64": 62, "aarch64": 183}
# `uname -m` and Docker's node descriptions spell the same machines differently.
_ARCHITECTURE_NAMES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
_LOAD_ADDRESS = 0x400000
_ELF_HEADER_SIZE = 64
_PROGRAM_HEADER_SIZE = 56
_PT_LOAD, _PT_GNU_STACK = 1, 0x6474E551
_PF_X, _PF_W, _PF_R = 1, 2, 4


class UnsupportedArchitecture(PermanentError):
    """The launcher exists for x86_64 and aarch64 only: retrying cannot help."""


def architecture(machine: str | None = None) -> str:
    """The launcher's name for `machine` (default: this host's)."""
    found = machine or platform.machine()
    try:
        return _ARCHITECTURE_NAMES[found.lower()]
    except KeyError:
        raise UnsupportedArchitecture(
            f"Director's no-new-privileges launcher exists for x86_64 and aarch64, not {found}: "
            "dynamic sites cannot run on this machine"
        ) from None


def launcher_program(arch: str) -> bytes:
    """A static ELF executable for `arch` (x86_64 or aarch64): header, two program headers, code, message."""
    code = _CODE[arch] + MESSAGE
    headers_size = _ELF_HEADER_SIZE + 2 * _PROGRAM_HEADER_SIZE
    size = headers_size + len(code)
    identification = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, version 1, SysV
    elf_header = identification + struct.pack(
        "<HHIQQQIHHHHHH",
        2,  # ET_EXEC
        _ELF_MACHINE[arch],
        1,
        _LOAD_ADDRESS + headers_size,  # entry: the first instruction
        _ELF_HEADER_SIZE,  # program headers right after this header
        0,  # no section headers
        0,
        _ELF_HEADER_SIZE,
        _PROGRAM_HEADER_SIZE,
        2,
        0,
        0,
        0,
    )
    # The whole file is one read-and-execute segment; the stack is not executable.
    load = struct.pack(
        "<IIQQQQQQ", _PT_LOAD, _PF_R | _PF_X, 0, _LOAD_ADDRESS, _LOAD_ADDRESS, size, size, 0x10000
    )
    stack = struct.pack("<IIQQQQQQ", _PT_GNU_STACK, _PF_R | _PF_W, 0, 0, 0, 0, 0, 16)
    return elf_header + load + stack + code


def launcher_host_path(state_dir: Path) -> Path:
    return state_dir / "bin" / "no-new-privs"


def install_launcher(path: Path, arch: str | None = None) -> bool:
    """Write the launcher for this host (or `arch`) at `path`, root's, read-only to others; True if written.

    Replaced atomically, so a task starting meanwhile finds the old program or the new one, never half.
    """
    program = launcher_program(arch or architecture())
    try:
        current = path.read_bytes()
        info = path.stat()
    except FileNotFoundError:
        current, info = None, None
    if (
        current == program
        and info is not None
        and info.st_mode & 0o7777 == 0o755
        and info.st_uid == os.geteuid()
    ):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o755)
    handle, staged = tempfile.mkstemp(dir=path.parent, prefix=".no-new-privs-")
    try:
        with os.fdopen(handle, "wb") as staged_file:
            staged_file.write(program)
            os.fchmod(staged_file.fileno(), 0o755)
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
    return True
