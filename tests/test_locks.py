"""runner.locks: a run's claim is exclusive, records its owner, and dies with its holder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runner.locks import RunClaim

ROOT = Path(__file__).resolve().parents[1]


def test_claim_is_exclusive_and_records_its_owner(tmp_path):
    claim = RunClaim(tmp_path, "r1")
    assert not claim.held and not claim.held_elsewhere() and claim.owner() is None
    assert claim.acquire() and claim.held
    assert claim.owner_path.is_file() and not [p for p in claim.dir.iterdir() if p.name.endswith(".tmp")]
    code = (f"from runner.locks import RunClaim\n"
            f"c = RunClaim({str(tmp_path)!r}, 'r1')\n"
            f"print(c.acquire(), c.held_elsewhere(), c.owner()['pid'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.split() == ["False", "True", str(os.getpid())]
    claim.release()
    assert not claim.held and not claim.owner_path.exists() and claim.path.exists()  # the lock file stays
    with RunClaim(tmp_path, "r1") as again:
        assert again.acquire()
    assert not again.held


def test_a_killed_holder_leaves_no_stale_claim(tmp_path):
    code = (f"import os\nfrom runner.locks import RunClaim\n"
            f"assert RunClaim({str(tmp_path)!r}, 'r2').acquire()\n"
            f"os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT)
    assert proc.returncode == -9
    claim = RunClaim(tmp_path, "r2")
    assert not claim.held_elsewhere() and claim.acquire()
    claim.release()
