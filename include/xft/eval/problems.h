// defines: Problem, load_problems, instruction_prompt, response_prefix, extract_code, test_program
//
// Code-generation benchmarks in the two JSONL layouts the XFT paper evaluates on (HumanEval(+),
// MBPP(+)), and the text plumbing around generation: the Magicoder prompt a model sees, the code
// pulled out of its answer, and the Python program that checks that code.
#pragma once
#include <string>
#include <vector>

namespace xft {

struct Problem {
  std::string task_id;      // "HumanEval/0"; MBPP's integer ids become "11"
  std::string prompt;       // HumanEval: signature + docstring; MBPP: the task text
  std::string entry_point;  // HumanEval: the function check() is called on; MBPP: best guess from the first test
  std::string test;         // HumanEval: defines check(candidate); MBPP: test_setup_code (usually empty)
  std::vector<std::string> test_list;  // MBPP: one assert per entry; empty for HumanEval
  std::string kind;                    // "humaneval" | "mbpp"
  std::string canonical_solution;      // HumanEval: the body after the prompt; MBPP: `code` (whole program)
};

// Reads a HumanEval JSONL (task_id, prompt, entry_point, test[, canonical_solution]) or an
// MBPP JSONL (task_id, text, test_list[, code, test_setup_code]), plain or gzip-compressed.
// The layout is decided by the first record and every record must follow it; blank lines are
// skipped. Errors name path:line and the field that is missing or mistyped.
std::vector<Problem> load_problems(const std::string& path);

// What the model answers with before generating: HumanEval "```python\n" + the prompt (the answer
// continues the given function, as Magicoder/EvalPlus do), MBPP "```python\n".
std::string response_prefix(const Problem& p);

// The whole model input: the Magicoder template around the instruction, then response_prefix(p).
//   HumanEval: "Write a solution to the following problem:\n```python\n{prompt}\n```"
//   MBPP:      "{text}[.] Your code should satisfy the following assertion:\n```python\n{test_list[0]}\n```"
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
std::string test_program(const Problem& p, const std::string& code);

}  // namespace xft
