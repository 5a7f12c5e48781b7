"""Compiler launcher that prints one short progress line per finished .cu file.

setup.py puts it in front of nvcc (through torch's PYTORCH_NVCC, which becomes `nvcc = ...` in build.ninja):

    python3 tools/nvcc_progress.py /usr/local/cuda/bin/nvcc ARGS...

It runs the command unchanged, with the same stdout/stderr, and exits with its exit status. Afterwards, if setup.py
set FLASH_ATTN_PROGRESS_STATE (a counter file shared by the parallel compile jobs), FLASH_ATTN_PROGRESS_TOTAL and
FLASH_ATTN_PROGRESS_START, it prints

    [flash_attn setup] [12/62] flash_fwd_hdim128_bf16_sm80.cu 98 s (7 min 12 s elapsed)

Ninja prints a job's output after the job's own (long) command line. Anything that goes wrong with the progress
line itself is ignored: the compile's result is all that counts.
"""

import os
import subprocess
import sys
import time

PREFIX = "[flash_attn setup]"


def source_name(args):
    """The file being compiled: the argument after -c (torch's flags can hold a second "-c": "-c -c x.cu"), else
    the last argument with a source suffix."""
    for i, arg in enumerate(args[:-1]):
        if arg == "-c" and not args[i + 1].startswith("-"):
            return os.path.basename(args[i + 1])
    for arg in reversed(args):
        if arg.endswith((".cu", ".cpp", ".cc", ".cxx")):
            return os.path.basename(arg)
    return None


def next_count(state_path):
    """Increment the counter in state_path under an exclusive lock (jobs finish concurrently); return it."""
    import fcntl

    fd = os.open(state_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
        count = (int(text) if text.isdigit() else 0) + 1
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"{count}\n".encode())
        return count
    finally:
        os.close(fd)  # releases the lock


def format_duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def progress_line(args, seconds, returncode, env):
    state = env.get("FLASH_ATTN_PROGRESS_STATE")
    name = source_name(args)
    if not state or name is None:
        return None
    count = next_count(state)
    total = env.get("FLASH_ATTN_PROGRESS_TOTAL", "")
    counter = f"[{count}/{total}]" if total.isdigit() else f"[{count}]"
    line = f"{PREFIX} {counter} {name} {format_duration(seconds)}"
    if returncode != 0:
        line += f" FAILED (exit {returncode})"
    start = env.get("FLASH_ATTN_PROGRESS_START", "")
    try:
        line += f" ({format_duration(time.time() - float(start))} elapsed)"
    except ValueError:
        pass
    return line


def run(command):
    """Run command and return its exit status, as a shell would report it (128 + N for signal N)."""
    try:
        proc = subprocess.Popen(command)
    except OSError as e:
        print(f"{PREFIX} cannot run {command[0]}: {e}", file=sys.stderr, flush=True)
        return 127
    while True:
        try:
            returncode = proc.wait()
            break
        except KeyboardInterrupt:  # the compiler got the same SIGINT (same process group): let it finish or die
            continue
    return 128 - returncode if returncode < 0 else returncode


def main(argv):
    if not argv:
        print(f"usage: {os.path.basename(sys.argv[0])} COMPILER [ARGS...]", file=sys.stderr)
        return 2
    started = time.monotonic()
    returncode = run(argv)
    try:
        line = progress_line(argv[1:], time.monotonic() - started, returncode, os.environ)
        if line:
            print(line, flush=True)
    except Exception:  # never let the progress line change the build's result
        pass
    return returncode


if __name__ == "__main__":
    status = main(sys.argv[1:])
    try:
        sys.stdout.flush()
    except Exception:
        pass
    sys.exit(status)
