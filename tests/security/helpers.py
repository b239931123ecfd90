"""The fixture corpus, materialised as a throwaway stack directory, and a Run that captures."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

from invoke import Config, Context

from tasks.engine.report import Reporter
from tasks.engine.run import Run
from tests.support.capture import Captured

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())

# Key material is assembled here, never committed whole, so no scanner (ours or a code host's
# push protection) ever sees a real-looking key or token in this repository.
_ARMOUR = "-----{} RSA PRIVATE KEY-----"
SUBSTITUTIONS = {
    "@@BEGIN_PRIVATE@@": _ARMOUR.format("BEGIN"),
    "@@END_PRIVATE@@": _ARMOUR.format("END"),
    "@@HF_TOKEN@@": "hf" + "_" + "Qm7Xv2Lp9Rt4Wz8Nb3Yc6Fd1Hj5Ks0GaPe",
    "@@GH_TOKEN@@": "ghp" + "_" + "Tz4Nq8Wm2Lk6Hv0Jc9Rb3Xf7Gd5Ps1Ya2Ue8",
}
SECRET_VALUES = list(EXPECTED["secrets"]) + [SUBSTITUTIONS["@@HF_TOKEN@@"],
                                             SUBSTITUTIONS["@@GH_TOKEN@@"]]


def build_corpus(dest: Path) -> Path:
    """Copy the corpus to ``dest`` as a stack directory: markers substituted, every file 0600,
    ``.mmstack`` 0700, then the modes and git tracking that expected.json asks for."""
    shutil.copytree(CORPUS, dest, ignore=shutil.ignore_patterns("expected.json", "__pycache__"))
    for path in dest.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for marker, value in SUBSTITUTIONS.items():
                text = text.replace(marker, value)
            path.write_text(text)
            path.chmod(0o600)
    for d in (dest / ".mmstack", dest / ".mmstack" / "secrets"):
        d.chmod(0o700)
    tracked = []
    for rel, spec in EXPECTED["files"].items():
        if "mode" in spec:
            (dest / rel).chmod(int(spec["mode"], 8))
        if spec.get("git_tracked"):
            tracked.append(rel)
    if tracked:
        git(dest, "init", "-q")
        git(dest, "add", "-f", "--", *tracked)
    return dest


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid")
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env=env)


def hints(root: Path) -> dict[Path, str]:
    return {root / rel: env for rel, env in EXPECTED["hints"].items()}


def make_run(stack_dir: Path, *, json: bool = False, fail_on: str | None = None) -> Captured:
    security = {"fail_on": fail_on} if fail_on else {}
    config = Config(overrides={"mmstack": {"stack_dir": str(stack_dir), "security": security}})
    out, err = io.StringIO(), io.StringIO()
    reporter = Reporter(out=out, err=err, json_mode=json, verbose=True)
    run = Run.start(Context(config=config), json=json, reporter=reporter)
    return Captured(run, out, err)
