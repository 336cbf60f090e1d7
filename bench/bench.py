#!/usr/bin/env python3
"""Benchmark fleetsafe against restic and BorgBackup on the same data, in one run.

Not a test: it measures and prints ratios; nothing here asserts a target.

    python3 bench/bench.py                   # ~1 GiB dataset (default)
    python3 bench/bench.py --size-mib 128    # quicker
    python3 bench/bench.py --json            # machine-readable result

Steps, identical for each tool (each on its own fresh repository):
  1. initial backup of the dataset (fleetsafe: --type full)
  2. ~1 % of the data changed (appends, rewrites, an insertion inside a large
     file, new files, a deletion) -> incremental backup
  3. no change -> backup again
  4. restore the latest snapshot into an empty directory
and the repository size after step 3.  Wall time and peak RSS (ru_maxrss of
the child, via wait4) are recorded per step.

The dataset is deterministic (seeded), so runs compare across machines and
commits.  It mixes compressible text, incompressible binary, duplicated
content (dedup) and many small files, roughly like a server's /etc + /srv.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PASSWORD = "bench-only-password-not-a-secret"

WORDS = ["backup", "policy", "restore", "verify", "snapshot", "audit", "encrypt", "offsite", "onsite", "cloud", "server", "workstation", "retention", "incremental", "full", "schedule", "checksum", "integrity", "approval", "ticket", "drill", "recovery", "the", "of", "and", "to", "in", "is", "for", "on", "with", "as", "by", "at", "from", "that", "this", "be", "are", "it", "an", "or"]


# --------------------------------------------------------------------------- dataset
def _text(rng: random.Random, size: int) -> bytes:
    out: list[str] = []
    n = 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + "\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def _binary(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def make_dataset(root: Path, size_mib: int, seed: int = 1) -> dict[str, int]:
    """Write a deterministic dataset of about size_mib MiB under root."""
    rng = random.Random(seed)
    total = size_mib * 1024 * 1024
    root.mkdir(parents=True)
    written = files = 0
    # 40 % large binaries (incompressible), 25 % large text logs, 15 % duplicated
    # content, 20 % small files (configs/docs) in a directory tree.
    plan = [("bin", 0.40), ("logs", 0.25), ("dup", 0.15), ("small", 0.20)]
    for kind, share in plan:
        budget = int(total * share)
        d = root / kind
        d.mkdir()
        if kind == "bin":
            i = 0
            while budget > 0:
                size = min(budget, rng.randint(8, 48) * 1024 * 1024)
                (d / f"blob{i:03d}.bin").write_bytes(_binary(rng, size))
                budget -= size; written += size; files += 1; i += 1
        elif kind == "logs":
            i = 0
            while budget > 0:
                size = min(budget, rng.randint(2, 16) * 1024 * 1024)
                (d / f"app{i:03d}.log").write_bytes(_text(rng, size))
                budget -= size; written += size; files += 1; i += 1
        elif kind == "dup":
            base = _binary(rng, min(budget // 4, 32 * 1024 * 1024) or 1)
            i = 0
            while budget > 0:
                data = base if i % 2 == 0 else base[: len(base) // 2] + _text(rng, 4096) + base[len(base) // 2 :]
                data = data[:budget]
                (d / f"copy{i:02d}.img").write_bytes(data)
                budget -= len(data); written += len(data); files += 1; i += 1
        else:
            i = 0
            while budget > 0:
                sub = d / f"dir{i // 200:03d}"
                sub.mkdir(exist_ok=True)
                size = min(budget, rng.choice([200, 1500, 4000, 12000, 60000]))
                (sub / f"file{i:05d}.conf").write_bytes(_text(rng, size))
                budget -= size; written += size; files += 1; i += 1
    return {"bytes": written, "files": files}


def mutate_dataset(root: Path, fraction: float = 0.01, seed: int = 2) -> int:
    """Change about `fraction` of the bytes in place; return bytes changed."""
    rng = random.Random(seed)
    all_files = sorted(p for p in root.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in all_files)
    budget = int(total * fraction)
    changed = 0
    # an insertion in the middle of a large file: CDC must resynchronise
    big = max(all_files, key=lambda p: p.stat().st_size)
    data = big.read_bytes()
    ins = _binary(rng, min(budget // 4, 1024 * 1024))
    big.write_bytes(data[: len(data) // 2] + ins + data[len(data) // 2 :])
    changed += len(ins)
    # appends to logs
    for p in [f for f in all_files if f.suffix == ".log"][:5]:
        add = _text(rng, budget // 20)
        with open(p, "ab") as fh:
            fh.write(add)
        changed += len(add)
    # rewrites of small files until the budget is spent
    small = [f for f in all_files if f.suffix == ".conf"]
    rng.shuffle(small)
    for p in small:
        if changed >= budget:
            break
        size = p.stat().st_size
        p.write_bytes(_text(rng, size))
        changed += size
    # new files and a deletion
    (root / "small" / "new").mkdir(exist_ok=True)
    for i in range(20):
        (root / "small" / "new" / f"added{i}.conf").write_bytes(_text(rng, 2000))
        changed += 2000
    if small:
        small[-1].unlink()
    return changed


# --------------------------------------------------------------------------- running
def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> dict[str, float]:
    """Run cmd; return wall seconds and the child's peak RSS in MiB.

    Peak RSS comes from GNU time (Debian package `time`): measuring with wait4
    from this process would count the parent's pages copied at fork, because
    Linux keeps the RSS high-water mark across execve.
    """
    stats = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-time-{os.getpid()}"
    start = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(stats), *cmd], env={**os.environ, **(env or {})},
                          cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")
    peak_kib = int(stats.read_text().split()[-1])
    stats.unlink()
    return {"seconds": round(wall, 2), "peak_rss_mib": round(peak_kib / 1024, 1)}


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Tool:
    name = "?"

    def __init__(self, work: Path, data: Path) -> None:
        self.work = work / self.name
        self.work.mkdir()
        self.repo = self.work / "repo"
        self.data = data

    def init(self) -> None: ...
    def backup(self, label: str) -> dict[str, float]: raise NotImplementedError
    def restore(self, dest: Path) -> dict[str, float]: raise NotImplementedError


class Fleetsafe(Tool):
    name = "fleetsafe"

    def init(self) -> None:
        keys = self.work / "keys"
        keys.mkdir(mode=0o700)
        cfg = {
            "version": 1, "host": "bench",
            "key_file": str(keys / "repo.key"),
            "state_dir": str(self.work / "state"),
            "audit_log": str(self.work / "audit.jsonl"),
            "sources": [str(self.data)],
            "targets": [{"name": "onsite", "url": f"file://{self.repo}", "primary": True}],
        }
        self.config = self.work / "agent.yml"
        self.config.write_text(json.dumps(cfg))  # JSON is valid YAML
        self.cli = [sys.executable, "-m", "fleetsafe", "--config", str(self.config)]
        self.env = {"PYTHONPATH": str(ROOT / "agent")}
        run(self.cli + ["key", "create", "--file", str(keys / "repo.key")], self.env)
        run(self.cli + ["init"], self.env)

    def backup(self, label: str) -> dict[str, float]:
        kind = "full" if label == "initial" else "incremental"
        return run(self.cli + ["backup", "--type", kind], self.env)

    def restore(self, dest: Path) -> dict[str, float]:
        out = subprocess.run(self.cli + ["snapshots", "--json"], env={**os.environ, **self.env},
                             capture_output=True, check=True, text=True)
        latest = json.loads(out.stdout)["snapshots"][-1]["id"]
        return run(self.cli + ["restore", latest, "--target-dir", str(dest)], self.env)


class Restic(Tool):
    name = "restic"

    def init(self) -> None:
        self.env = {"RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": str(self.work / "cache")}
        run(["restic", "-r", str(self.repo), "init"], self.env)

    def backup(self, label: str) -> dict[str, float]:
        return run(["restic", "-r", str(self.repo), "backup", "--quiet", str(self.data)], self.env)

    def restore(self, dest: Path) -> dict[str, float]:
        return run(["restic", "-r", str(self.repo), "restore", "latest", "--target", str(dest)], self.env)


class Borg(Tool):
    name = "borg"

    def init(self) -> None:
        self.env = {"BORG_PASSPHRASE": PASSWORD, "BORG_BASE_DIR": str(self.work / "home"),
                    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no"}
        self.n = 0
        # zstd level 3 to match fleetsafe's default compression
        run(["borg", "init", "--encryption=repokey-blake2", str(self.repo)], self.env)

    def backup(self, label: str) -> dict[str, float]:
        self.n += 1
        return run(["borg", "create", "--compression", "zstd,3", f"{self.repo}::s{self.n}", str(self.data)], self.env)

    def restore(self, dest: Path) -> dict[str, float]:
        dest.mkdir(parents=True, exist_ok=True)
        return run(["borg", "extract", f"{self.repo}::s{self.n}"], self.env, cwd=dest)


# --------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--tools", default="fleetsafe,restic,borg")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    data = args.work / "data"
    t0 = time.monotonic()
    ds = make_dataset(data, args.size_mib)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    log(f"dataset: {ds['bytes'] / 2**20:.0f} MiB in {ds['files']} files ({time.monotonic() - t0:.1f} s)")

    classes = {c.name: c for c in (Fleetsafe, Restic, Borg)}
    tools = [classes[n](args.work, data) for n in args.tools.split(",")]
    results: dict[str, dict[str, object]] = {t.name: {} for t in tools}
    for t in tools:
        t.init()
        results[t.name]["initial"] = t.backup("initial")
        log(f"{t.name:9s} initial backup  {results[t.name]['initial']}")
    changed = mutate_dataset(data)
    log(f"changed {changed / 2**20:.1f} MiB (~{100 * changed / ds['bytes']:.1f} %)")
    for t in tools:
        results[t.name]["incremental_1pct"] = t.backup("incremental")
        results[t.name]["no_change"] = t.backup("nochange")
        results[t.name]["repo_mib"] = round(du(t.repo) / 2**20, 1)
        results[t.name]["restore"] = t.restore(args.work / f"restore-{t.name}")
        log(f"{t.name:9s} {results[t.name]}")

    steps = ["initial", "incremental_1pct", "no_change", "restore"]
    ratios: dict[str, dict[str, float]] = {}
    if "fleetsafe" in results:
        fs = results["fleetsafe"]
        for other in (n for n in results if n != "fleetsafe"):
            o = results[other]
            r = {s: round(fs[s]["seconds"] / max(o[s]["seconds"], 0.01), 2) for s in steps}  # type: ignore[index]
            r.update({f"{s}_mem": round(fs[s]["peak_rss_mib"] / max(o[s]["peak_rss_mib"], 0.1), 2) for s in steps})  # type: ignore[index]
            r["repo_size"] = round(fs["repo_mib"] / max(o["repo_mib"], 0.1), 2)  # type: ignore[operator]
            ratios[f"fleetsafe/{other}"] = r
    doc = {"dataset": ds, "changed_bytes": changed, "results": results, "ratios": ratios,
           "versions": {"restic": _version(["restic", "version"]), "borg": _version(["borg", "--version"])}}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print("\nseconds / peak RSS MiB / repository MiB")
        print(f"{'step':18s}" + "".join(f"{n:>22s}" for n in results))
        for s in steps:
            print(f"{s:18s}" + "".join(f"{results[n][s]['seconds']:>12.2f}s {results[n][s]['peak_rss_mib']:>6.0f}M" for n in results))  # type: ignore[index]
        print(f"{'repo size':18s}" + "".join(f"{results[n]['repo_mib']:>21.1f}M" for n in results))
        print("\nratios (fleetsafe / other; < 1 means fleetsafe is faster or smaller)")
        for k, r in ratios.items():
            print(f"  {k}: " + ", ".join(f"{s}={v}" for s, v in r.items()))
    return 0


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "absent"


if __name__ == "__main__":
    sys.exit(main())
