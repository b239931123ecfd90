"""The host shell's framing and the deploy's stack directory, without SSH: the reply parser
against one fixture per named state, and the request line run by a real POSIX shell."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tasks.engine.errors import RemoteError
from tasks.remote.hostfacts import absolute_stack_dir
from tasks.remote.hostshell import Reply, request, split_replies

FIXTURES = Path(__file__).parent / "fixtures"
SHELL_STATES = sorted((FIXTURES / "hostshell").glob("*.json"))
STACK_DIRS = json.loads((FIXTURES / "hostfacts" / "stack_dirs.json").read_text())["cases"]


@pytest.mark.parametrize("path", SHELL_STATES, ids=[p.stem for p in SHELL_STATES])
def test_split_replies(path: Path) -> None:
    case = json.loads(path.read_text())
    replies, rest_out, rest_err = split_replies(case["stdout"].encode(), case["stderr"].encode(), case["nonce"])
    assert replies == [Reply(**r) for r in case["replies"]], case["state"]
    assert (rest_out.decode(), rest_err.decode()) == (case["rest_stdout"], case["rest_stderr"])


@pytest.mark.parametrize("case", STACK_DIRS, ids=[c["state"] for c in STACK_DIRS])
def test_absolute_stack_dir(case: dict) -> None:
    if "error" in case:
        with pytest.raises(RemoteError) as info:
            absolute_stack_dir(case["stack_dir"], case["home"])
        assert case["error"] in str(info.value) and info.value.fix
    else:
        assert absolute_stack_dir(case["stack_dir"], case["home"]) == case["root"]


def run_requests(commands: list[str], nonce: str = "t0") -> list[Reply]:
    """The request lines fed to a real ``sh -s`` as the host's shell gets them, split again."""
    script = "".join(request(c, nonce) for c in commands)
    proc = subprocess.run(["/bin/sh", "-s"], input=script.encode(), capture_output=True, timeout=30)
    replies, rest_out, rest_err = split_replies(proc.stdout, proc.stderr, nonce)
    assert (rest_out, rest_err) == (b"", b"")
    return replies


def test_requests_run_in_order_each_with_its_own_status_and_streams() -> None:
    replies = run_requests(["printf 'a b'", "echo out; echo err >&2; exit 3", "printf '%s\\n' \"it's\""])
    assert replies == [Reply(0, "a b", ""), Reply(3, "out\n", "err\n"), Reply(0, "it's\n", "")]


def test_a_command_cannot_read_the_next_requests_or_end_the_shell() -> None:
    # `cat` would swallow the rest of the script if it read the shell's stdin; `exit` and `cd`
    # would end the shell or move it; a syntax error would stop a shell reading a script.
    replies = run_requests(["cat", "cd /; exit 0", "pwd", "if then fi", "echo still here"])
    assert [r.exited for r in replies] == [0, 0, 0, replies[3].exited, 0]
    assert replies[0].stdout == "" and replies[2].stdout != "/\n"
    assert replies[3].exited != 0 and replies[3].stderr
    assert replies[4].stdout == "still here\n"
