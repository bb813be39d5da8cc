# Runs one MultiPL-E program in its language (embedded into the library at build time; the
# sandbox runs this file with Python, which compiles and runs the program with the language's own
# toolchain in the sandbox's scratch directory, the program's output discarded).
#
# problems.cpp prepends one line, `ARGS = "<base64 of a JSON object>"`:
#   {"language": "cpp" | "java" | "js" | "ts" | "rs" | "go" | "go_test.go" | "php" | "sh",
#    "source": str, "marker": str, "timeout": seconds}
# Exit status: the program's (0: its tests passed), and then the marker on stdout. A toolchain
# that is missing, or a language this runner does not know, is the evaluator's failure, never the
# sample's: the line "<marker>:error:<why>" and exit status 3, which the C++ side turns into an
# error that stops the evaluation.
import base64, json, os, shutil, subprocess, sys, time

A = json.loads(base64.b64decode(ARGS))
MARKER = A["marker"]

# language -> (file name, [commands]); a command's first word must be on PATH.
RECIPES = {
    "cpp": ("prog.cpp", [["g++", "-std=c++17", "-O0", "-o", "prog", "prog.cpp"], ["./prog"]]),
    "java": ("Problem.java", [["javac", "-encoding", "UTF-8", "Problem.java"],
                              ["java", "-ea", "-Xmx512m", "-Xss8m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "Problem"]]),
    "js": ("prog.js", [["node", "prog.js"]]),
    "ts": ("prog.ts", [["tsc", "--target", "es2019", "--lib", "es2019", "--outFile", "prog.js", "prog.ts"], ["node", "prog.js"]]),
    "rs": ("prog.rs", [["rustc", "-o", "prog", "prog.rs"], ["./prog"]]),
    "go": ("prog_test.go", [["go", "test", "prog_test.go"]]),
    "php": ("prog.php", [["php", "prog.php"]]),
    "sh": ("prog.sh", [["bash", "prog.sh"]]),
}
RECIPES["go_test.go"] = RECIPES["go"]


def evaluator_error(why):
    sys.stdout.write("\n%s:error:%s\n" % (MARKER, why))
    sys.stdout.flush()
    os._exit(3)


language = A["language"]
if language not in RECIPES:
    evaluator_error("MultiPL-E language '%s' is not supported (supported: %s)" % (language, ", ".join(sorted(RECIPES))))
name, commands = RECIPES[language]
# The system's toolchains first (what scripts/setup.sh installs from Debian), then PATH: a per-user
# proxy such as rustup's reads its settings from a HOME the sandbox does not have.
SYSTEM = "/usr/bin:/bin:/usr/local/bin"
for command in commands:
    if command[0].startswith("./"):
        continue
    found = shutil.which(command[0], path=SYSTEM) or shutil.which(command[0])
    if found is None:
        evaluator_error("the %s toolchain is missing: '%s' is not on PATH (scripts/setup.sh installs it)"
                        % (language, command[0]))
    command[0] = found
with open(name, "w", encoding="utf-8") as f:
    f.write(A["source"])
env = dict(os.environ, GOCACHE=os.path.abspath(".gocache"), GOPATH=os.path.abspath(".gopath"), GO111MODULE="off",
           GOFLAGS="-count=1", HOME=os.path.abspath("."))
deadline = time.monotonic() + A["timeout"]
for command in commands:
    left = deadline - time.monotonic()
    if left <= 0:
        sys.exit(124)
    try:
        r = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=left)
    except subprocess.TimeoutExpired:
        sys.exit(124)
    if r.returncode != 0:
        sys.stderr.write(r.stderr.decode("utf-8", "replace")[-1500:])
        sys.exit(1)
sys.stdout.write("\n%s\n" % MARKER)
sys.stdout.flush()
