"""The layering rule, checked: each src/<layer>/README.md says what the layer may include in a
line "May depend on: a, b, c/file.h, d (from `.cpp` files)." This reads that line and fails on
an #include in src/<layer>/ or include/xft/<layer>/ that it does not allow.

An item of the line is a layer (its internal and installed headers), one file of a layer
(model/hf_names.h), or kernels/ (the Torch-free CUDA headers). An item followed by a mention
of `.cpp` before the next item (a parenthesis such as "(from `.cpp` files)") may be included
from .cpp files only, not from headers. Other words (LibTorch, nlohmann_json) name outside
libraries and are not checked. A layer without a README, or a README without the line, fails.

Usage: check_layer_dependencies.py SOURCE_DIR"""
import re
import sys
from pathlib import Path

# Includes the rule does not allow yet, each to be removed from this list with the include it
# names; the check fails when an entry is no longer needed, so the list only shrinks.
KNOWN = {
    # read_json_file comes from xft/core/files.h, which model/config.h includes.
    ("src/data/instruction_data.cpp", "xft/model/config.h"),
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layers(root):
    return sorted(p.name for p in (root / "src").iterdir() if p.is_dir())


def rule(root, layer, names):
    """(allowed layers, allowed single files, layers allowed from .cpp files only)."""
    readme = root / "src" / layer / "README.md"
    if not readme.exists():
        sys.exit(f"src/{layer}/README.md is missing: every layer says what it may depend on")
    text = " ".join(readme.read_text().split())
    m = re.search(r"May depend on:(.*?)(?:\.\s|\.$)", text)
    if not m:
        sys.exit(f"src/{layer}/README.md has no 'May depend on: ...' line")
    line = m.group(1)
    token = re.compile(r"\b(" + "|".join(names + ["kernels"]) + r")\b(/[\w./]*\.h)?")
    hits = list(token.finditer(line))
    allowed, files, cpp_only = set(), set(), set()
    for i, t in enumerate(hits):
        after = line[t.end():hits[i + 1].start() if i + 1 < len(hits) else len(line)]
        if t.group(2):
            files.add(t.group(1) + t.group(2))
        elif "`.cpp`" in after:
            cpp_only.add(t.group(1))
        else:
            allowed.add(t.group(1))
    return allowed, files, cpp_only


def target(root, source, inc, names):
    """(layer, path inside the layer) an include reaches, or None outside xft."""
    parts = inc.split("/")
    if parts[0] == "xft" and len(parts) > 2 and parts[1] in names:
        return parts[1], "/".join(parts[1:])
    if parts[0] in names and len(parts) > 1:
        return parts[0], inc
    if len(parts) == 1 and (root / "kernels" / inc).exists() and not (source.parent / inc).exists():
        return "kernels", inc
    return None


def main():
    root = Path(sys.argv[1]).resolve()
    names = layers(root)
    problems, used = [], set()
    for layer in names:
        allowed, files, cpp_only = rule(root, layer, names)
        sources = [*(root / "src" / layer).rglob("*"), *(root / "include" / "xft" / layer).rglob("*")]
        for source in sorted(s for s in sources if s.suffix in (".h", ".cpp", ".cuh", ".cu")):
            rel = source.relative_to(root).as_posix()
            for inc in INCLUDE.findall(source.read_text(errors="replace")):
                hit = target(root, source, inc, names)
                if hit is None or hit[0] == layer or hit[0] in allowed or hit[1] in files:
                    continue
                if hit[0] in cpp_only and source.suffix == ".cpp":
                    continue
                if (rel, inc) in KNOWN:
                    used.add((rel, inc))
                    continue
                why = " (allowed from .cpp files only)" if hit[0] in cpp_only else ""
                problems.append(f'{rel}: #include "{inc}" reaches {hit[0]}/, which src/{layer}/README.md '
                                f"does not allow{why}")
    for rel, inc in sorted(KNOWN - used):
        problems.append(f'{rel} no longer includes "{inc}" against its rule: remove the entry from KNOWN in {__file__}')
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"{len(names)} layers follow their README's 'May depend on' line")


if __name__ == "__main__":
    main()
