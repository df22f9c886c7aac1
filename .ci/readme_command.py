"""Prints one of the README's two set-up commands, so CI runs exactly what the README says.

python .ci/readme_command.py main|test   (the first / second bash block of "## Set-up ...")
"""
import pathlib
import re
import sys

SECTION = "## Set-up on a fresh machine"


def setup_commands(readme: str) -> dict:
  section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
  blocks = re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)
  if len(blocks) != 2 or any("\n" in b for b in blocks):
    raise SystemExit(f"README: expected two one-line bash blocks under {SECTION!r}, got {blocks}")
  return dict(zip(("main", "test"), blocks))


if __name__ == "__main__":
  text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
  print(setup_commands(text)[sys.argv[1]])
