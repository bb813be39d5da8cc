// defines: python_program (a Python program of the library's, given its arguments)
//
// The Python halves of the evaluator (evalplus_harness.py, chat_template.py) read their arguments
// from a first line `ARGS = "<base64 of a JSON object>"`: base64 keeps any text (prompts, code,
// templates) out of Python's quoting rules.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace xft {

std::string python_program(const nlohmann::json& args, const char* body);

}  // namespace xft
