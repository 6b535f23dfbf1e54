#!/usr/bin/env python3
"""Write MuPDF's text of every PDF under DIR as `swarm run`-style JSON Lines, so that
../shared/tools/fidelity.py scores MuPDF exactly as it scores swarm.

usage: python3 benches/peer_fidelity.py DIR OUT.jsonl [--timeout 10]

Each document becomes one line {"path", "status", "pages": [{"number": 1, "text"}]}
with the whole `mutool draw -F txt` output as its text (fidelity.py joins pages anyway).
A document mutool does not finish within --timeout seconds gets empty text and status
"error". Needs mutool (Debian: mupdf-tools).
"""
import argparse, glob, json, os, subprocess

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("out")
    ap.add_argument("--timeout", type=float, default=10)
    a = ap.parse_args()
    with open(a.out, "w", encoding="utf-8") as out:
        for path in sorted(glob.glob(os.path.join(a.dir, "**", "*.pdf"), recursive=True)):
            try:
                r = subprocess.run(["mutool", "draw", "-q", "-F", "txt", "-o", "-", path],
                                   capture_output=True, timeout=a.timeout)
                text, status = r.stdout.decode("utf-8", "replace"), "ok"
            except subprocess.TimeoutExpired:
                text, status = "", "error"
            out.write(json.dumps({"path": path, "status": status,
                                  "pages": [{"number": 1, "text": text}]}) + "\n")

if __name__ == "__main__":
    main()
