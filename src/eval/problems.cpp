#include "xft/eval/problems.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "eval/python_program.h"
#include "xft/core/error.h"

namespace xft {

const char* multipl_e_runner();  // multipl_e_runner.py, embedded at build time

namespace {

using nlohmann::json;

// zlib reads gzip and, in its transparent mode, plain files alike: one path for .jsonl and .jsonl.gz.
std::string read_maybe_gzip(const std::string& path) {
  gzFile f = ::gzopen(path.c_str(), "rb");
  XFT_CHECK(f != nullptr, path, ": cannot open for reading (", std::strerror(errno), ")");
  std::string text;
  char buf[1 << 16];
  int got = 0;
  while ((got = ::gzread(f, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(got));
  if (got < 0) {
    int code = 0;
    const std::string why = ::gzerror(f, &code);
    ::gzclose(f);
    fail(path, ": cannot decompress (", why, "): expected a plain or gzip-compressed JSONL file");
  }
  ::gzclose(f);
  return text;
}

std::string strip(const std::string& s) {
  const auto space = [](unsigned char c) { return std::isspace(c) != 0; };
  auto b = std::find_if_not(s.begin(), s.end(), space);
  auto e = std::find_if_not(s.rbegin(), s.rend(), space).base();
  return b < e ? std::string(b, e) : std::string();
}

std::string string_field(const json& rec, const char* key, bool required, const std::string& where) {
  if (!rec.contains(key) || rec.at(key).is_null()) {
    XFT_CHECK(!required, where, ": missing field '", key, "'");
    return "";
  }
  XFT_CHECK(rec.at(key).is_string(), where, ": field '", key, "' must be a string, not ", rec.at(key).type_name());
  return rec.at(key).get<std::string>();
}

// A list of strings (MBPP's asserts, MultiPL-E's stop tokens); `what` says what its items are.
std::vector<std::string> string_list_field(const json& rec, const char* key, const char* what,
                                           const std::string& where) {
  XFT_CHECK(rec.contains(key) && rec.at(key).is_array(), where, ": field '", key, "' must be a list of ", what);
  std::vector<std::string> out;
  for (const auto& t : rec.at(key)) {
    XFT_CHECK(t.is_string(), where, ": field '", key, "' must hold strings, found ", t.type_name());
    out.push_back(t.get<std::string>());
  }
  return out;
}

// HumanEval ids are strings, MBPP's are integers.
std::string task_id_field(const json& rec, const std::string& where) {
  XFT_CHECK(rec.contains("task_id") && !rec.at("task_id").is_null(), where, ": missing field 'task_id'");
  const auto& v = rec.at("task_id");
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  fail(where, ": field 'task_id' must be a string or an integer, not ", v.type_name());
}

// MBPP records carry no entry point; the first test names the function (`assert f(...) == ...`),
// possibly inside wrappers like set(...) or math.isclose(...). Informational only: MBPP programs
// run their asserts directly.
std::string guess_entry_point(const std::string& test) {
  static const std::set<std::string> wrappers = {
      "assert", "set", "sorted", "list", "tuple",     "abs", "round", "math.isclose", "isclose", "str",        "int",
      "float",  "len", "bool",   "dict", "frozenset", "sum", "all",   "any",          "type",    "isinstance", "max",
      "min",    "not", "and",    "or",   "in",        "is"};
  size_t i = 0;
  while (i < test.size()) {
    const unsigned char c = static_cast<unsigned char>(test[i]);
    if (std::isalpha(c) || c == '_') {
      size_t j = i;
      while (j < test.size() && (std::isalnum(static_cast<unsigned char>(test[j])) || test[j] == '_' || test[j] == '.'))
        ++j;
      const std::string name = test.substr(i, j - i);
      size_t k = j;
      while (k < test.size() && test[k] == ' ') ++k;
      if (k < test.size() && test[k] == '(' && !wrappers.count(name)) return name;
      i = j;
    } else if (c == '"' || c == '\'') {
      const size_t close = test.find(static_cast<char>(c), i + 1);  // skip string literals
      i = close == std::string::npos ? test.size() : close + 1;
    } else {
      ++i;
    }
  }
  return "";
}

Problem humaneval_record(const json& rec, const std::string& where) {
  Problem p;
  p.kind = "humaneval";
  p.task_id = task_id_field(rec, where);
  p.prompt = string_field(rec, "prompt", true, where);
  p.entry_point = string_field(rec, "entry_point", true, where);
  p.test = string_field(rec, "test", true, where);
  p.canonical_solution = string_field(rec, "canonical_solution", false, where);
  XFT_CHECK(!strip(p.entry_point).empty(), where, ": field 'entry_point' is empty");
  return p;
}

// EvalPlus' layout, for HumanEval+ and MBPP+ alike; the inputs stay in `record` for the Python side.
Problem evalplus_record(const json& rec, const std::string& line, const std::string& where) {
  Problem p;
  p.task_id = task_id_field(rec, where);
  p.kind = p.task_id.rfind("Mbpp/", 0) == 0 ? "mbpp+" : "humaneval+";
  p.prompt = string_field(rec, "prompt", true, where);
  p.entry_point = string_field(rec, "entry_point", true, where);
  p.canonical_solution = string_field(rec, "canonical_solution", true, where);
  XFT_CHECK(!strip(p.entry_point).empty(), where, ": field 'entry_point' is empty");
  for (const char* key : {"base_input", "plus_input"}) {
    XFT_CHECK(rec.at(key).is_array(), where, ": field '", key, "' must be a list of argument lists, not ",
              rec.at(key).type_name());
  }
  XFT_CHECK(rec.contains("atol") && rec.at("atol").is_number(), where,
            ": field 'atol' must be a number (the float tolerance; 0 for exact comparison)");
  if (p.kind == "mbpp+") {
    const size_t open = p.prompt.find("\"\"\""), close = p.prompt.rfind("\"\"\"");
    XFT_CHECK(open != std::string::npos && close > open && p.prompt.find("assert", open) < close, where,
              ": an MBPP+ prompt must be a docstring holding the task and an assert");
  }
  p.record = line;
  return p;
}

// Python's json (which EvalPlus reads these files with) accepts NaN and Infinity; nlohmann does
// not. Outside strings they become 0 here: the C++ side reads no input values, only `record`'s text does.
json parse_record(const std::string& line) {
  json rec = json::parse(line, nullptr, false);
  if (!rec.is_discarded()) return rec;
  std::string plain = line;
  bool in_string = false;
  for (size_t i = 0; i < plain.size(); ++i) {
    if (in_string) {
      if (plain[i] == '\\')
        ++i;
      else if (plain[i] == '"')
        in_string = false;
      continue;
    }
    if (plain[i] == '"') in_string = true;
    for (const char* token : {"-Infinity", "Infinity", "NaN"}) {
      const size_t n = std::strlen(token);
      if (plain.compare(i, n, token) == 0) {
        plain.replace(i, n, n, ' ');
        plain[i] = '0';
        break;
      }
    }
  }
  return json::parse(plain);  // still invalid: the caller reports the parse error
}

Problem mbpp_record(const json& rec, const std::string& where) {
  Problem p;
  p.kind = "mbpp";
  p.task_id = task_id_field(rec, where);
  p.prompt = string_field(rec, "text", true, where);
  p.canonical_solution = string_field(rec, "code", false, where);
  p.test = string_field(rec, "test_setup_code", false, where);
  p.test_list = string_list_field(rec, "test_list", "assert statements", where);
  XFT_CHECK(!p.test_list.empty(), where, ": field 'test_list' is empty (a problem needs at least one test)");
  p.entry_point = guess_entry_point(p.test_list.front());
  return p;
}

// DS-1000 as its authors publish it (ds1000.jsonl): the code is run inside code_context.
Problem ds1000_record(const json& rec, const std::string& where) {
  Problem p;
  p.kind = "ds1000";
  p.prompt = string_field(rec, "prompt", true, where);
  p.test = string_field(rec, "code_context", true, where);
  p.canonical_solution = string_field(rec, "reference_code", false, where);
  XFT_CHECK(rec.at("metadata").is_object(), where,
            ": field 'metadata' must be an object with 'library' and 'problem_id'");
  const json& meta = rec.at("metadata");
  p.group = string_field(meta, "library", true, where + " (metadata)");
  XFT_CHECK(
      meta.contains("problem_id") && (meta.at("problem_id").is_number_integer() || meta.at("problem_id").is_string()),
      where, ": field 'metadata.problem_id' must be an integer or a string");
  const json& id = meta.at("problem_id");
  p.task_id = "DS1000/" + (id.is_string() ? id.get<std::string>() : std::to_string(id.get<int64_t>()));
  XFT_CHECK(p.test.find("def test_execution(") != std::string::npos, where,
            ": field 'code_context' defines no test_execution(solution)");
  return p;
}

// MultiPL-E as its authors publish it (one JSON object per problem, as the dataset's rows).
Problem multipl_e_record(const json& rec, const std::string& where) {
  Problem p;
  p.kind = "multipl-e";
  p.task_id = string_field(rec, "name", true, where);
  p.group = string_field(rec, "language", true, where);
  p.prompt = string_field(rec, "prompt", true, where);
  p.test = string_field(rec, "tests", true, where);
  p.stop_tokens = string_list_field(rec, "stop_tokens", "strings", where);
  return p;
}

// DS-1000's post-processing of an answer (its evaluation's postprocess): the code before
// "</code>", without a Markdown fence, before "END SOLUTION", without "BEGIN SOLUTION".
std::string ds1000_code(std::string code) {
  code = code.substr(0, code.find("</code>"));
  for (size_t at; (at = code.find("```python")) != std::string::npos;) code.erase(at, 9);
  code = code.substr(0, code.find("```"));
  code = code.substr(0, code.find("\nEND SOLUTION"));
  for (size_t at; (at = code.find("BEGIN SOLUTION")) != std::string::npos;) code.erase(at, 14);
  return code;
}

// ```, its language tag and the first line of the block's contents.
struct Fence {
  size_t content_begin;
  std::string lang;
};

Fence parse_fence(const std::string& text, size_t open) {
  const size_t nl = text.find('\n', open + 3);
  const size_t tag_end = nl == std::string::npos ? text.size() : nl;
  std::string lang = strip(text.substr(open + 3, tag_end - open - 3));
  lang = lang.substr(0, lang.find_first_of(" \t{"));  // "```python title=x" / "```{python}"
  std::transform(lang.begin(), lang.end(), lang.begin(), [](unsigned char c) { return std::tolower(c); });
  return {nl == std::string::npos ? text.size() : nl + 1, lang};
}

// The closing fence: a line starting (after indentation) with ```; failing that, any ``` (a model
// that ends a line of code with the fence); npos when the block is never closed.
size_t find_closing(const std::string& text, size_t from) {
  for (size_t line = from; line < text.size();) {
    size_t p = line;
    while (p < text.size() && (text[p] == ' ' || text[p] == '\t')) ++p;
    if (text.compare(p, 3, "```") == 0) return line;
    const size_t nl = text.find('\n', line);
    if (nl == std::string::npos) break;
    line = nl + 1;
  }
  return text.find("```", from);
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

const char* const kMagicoderHead =
    "You are an exceptionally intelligent coding assistant that consistently delivers accurate and reliable "
    "responses to user instructions.\n\n@@ Instruction\n";
const char* const kMagicoderTail = "\n\n@@ Response\n";

}  // namespace

std::vector<Problem> load_problems(const std::string& path) {
  const std::string text = read_maybe_gzip(path);
  std::vector<Problem> problems;
  std::set<std::string> seen;
  std::string kind;
  size_t line_no = 0;
  for (size_t begin = 0; begin < text.size();) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    ++line_no;
    if (strip(line).empty()) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    json rec;
    try {
      rec = parse_record(line);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
      fail(where, ": invalid JSON (", e.what(), ")");
    }
    XFT_CHECK(rec.is_object(), where, ": expected a JSON object per line, found ", rec.type_name());
    if (kind.empty()) {
      if (rec.contains("base_input") && rec.contains("plus_input")) {
        kind = "evalplus";
      } else if (rec.contains("prompt") && rec.contains("entry_point") && rec.contains("test")) {
        kind = "humaneval";
      } else if (rec.contains("text") && rec.contains("test_list")) {
        kind = "mbpp";
      } else if (rec.contains("code_context") && rec.contains("metadata")) {
        kind = "ds1000";
      } else if (rec.contains("language") && rec.contains("tests") && rec.contains("stop_tokens")) {
        kind = "multipl-e";
      } else {
        fail(where,
             ": neither a HumanEval record (task_id, prompt, entry_point, test), an MBPP record "
             "(task_id, text, test_list), an EvalPlus record (task_id, prompt, entry_point, "
             "canonical_solution, base_input, plus_input, atol), a DS-1000 record (prompt, "
             "code_context, metadata) nor a MultiPL-E record (name, language, prompt, tests, stop_tokens)");
      }
    }
    if (kind == "evalplus") {
      XFT_CHECK(rec.contains("base_input") && rec.contains("plus_input"), where,
                ": missing field 'base_input' or 'plus_input' (the file's first record is an EvalPlus record)");
    }
    XFT_CHECK(kind != "ds1000" || (rec.contains("code_context") && rec.contains("metadata")), where,
              ": missing field 'code_context' or 'metadata' (the file's first record is a DS-1000 record)");
    Problem p = kind == "evalplus"    ? evalplus_record(rec, line, where)
                : kind == "humaneval" ? humaneval_record(rec, where)
                : kind == "ds1000"    ? ds1000_record(rec, where)
                : kind == "multipl-e" ? multipl_e_record(rec, where)
                                      : mbpp_record(rec, where);
    XFT_CHECK(seen.insert(p.task_id).second, where, ": duplicate task_id '", p.task_id, "'");
    problems.push_back(std::move(p));
  }
  XFT_CHECK(!problems.empty(), path, ": no problems (expected HumanEval or MBPP JSONL records)");
  return problems;
}

bool is_evalplus(const Problem& p) { return p.kind == "humaneval+" || p.kind == "mbpp+"; }

std::string response_prefix(const Problem& p) {
  if (p.kind == "mbpp" || p.kind == "ds1000") return "```python\n";
  if (p.kind == "mbpp+") return "```python";
  return "```python\n" + strip(p.prompt);
}

std::string instruction_prompt(const Problem& p) {
  std::string instruction;
  if (p.kind == "mbpp" || p.kind == "mbpp+") {
    std::string task = strip(p.prompt), first_test = p.test_list.empty() ? std::string() : strip(p.test_list.front());
    if (p.kind == "mbpp+") {  // the docstring: the task, then its assert
      const size_t open = p.prompt.find("\"\"\"") + 3;
      const std::string doc = p.prompt.substr(open, p.prompt.rfind("\"\"\"") - open);
      const size_t assert_at = doc.find("assert");
      task = strip(doc.substr(0, assert_at));
      first_test = strip(doc.substr(assert_at));
    }
    if (!task.empty() && task.back() != '.') task += ".";
    instruction = task + " Your code should satisfy the following assertion:\n```python\n" + first_test + "\n```";
  } else if (p.kind == "ds1000") {
    instruction = strip(p.prompt);  // DS-1000's prompt is itself the problem and the code to complete
  } else {
    instruction = "Write a solution to the following problem:\n```python\n" + strip(p.prompt) + "\n```";
  }
  return kMagicoderHead + instruction + kMagicoderTail + response_prefix(p);
}

std::string extract_code(const std::string& response_text) {
  std::string fallback;  // the first block in some other language, used when no Python block exists
  bool have_fallback = false;
  for (size_t pos = 0;;) {
    const size_t open = response_text.find("```", pos);
    if (open == std::string::npos) break;
    const Fence fence = parse_fence(response_text, open);
    const size_t close = find_closing(response_text, fence.content_begin);
    const size_t end = close == std::string::npos ? response_text.size() : close;
    std::string content = response_text.substr(fence.content_begin, end - fence.content_begin);
    if (fence.lang.empty() || fence.lang == "python" || fence.lang == "py" || fence.lang == "python3") return content;
    if (!have_fallback) {
      fallback = std::move(content);
      have_fallback = true;
    }
    if (close == std::string::npos) break;
    pos = response_text.find("```", close) + 3;  // past the closing fence
  }
  return have_fallback ? fallback : response_text;
}

std::string test_program(const Problem& p, const std::string& code, const std::string& marker) {
  XFT_CHECK(!is_evalplus(p), p.task_id, ": an EvalPlus (", p.kind,
            ") problem has no test program; it is scored by comparing outputs (check_solutions, evalplus.h)");
  std::string program;
  if (p.kind == "multipl-e") {
    // The completion (what follows the prompt) ends at its first stop token, as MultiPL-E cuts it.
    std::string source = code;
    if (source.compare(0, p.prompt.size(), p.prompt) == 0) {
      size_t cut = source.size();
      for (const auto& s : p.stop_tokens)
        if (!s.empty()) cut = std::min(cut, source.find(s, p.prompt.size()));
      source.resize(cut);
    }
    XFT_CHECK(!marker.empty(), p.task_id, ": a MultiPL-E program needs a marker (its runner reports through it)");
    return python_program(
        {{"language", p.group}, {"source", source + "\n" + p.test}, {"marker", marker}, {"timeout", 30.0}},
        multipl_e_runner());
  }
  if (p.kind == "ds1000") {
    // DS-1000's own evaluation: the context, the solution as a string, then its checks.
    program = p.test + "\ncode = " + json(ds1000_code(code)).dump(-1, ' ', false, json::error_handler_t::replace) +
              "\ntest_execution(code)\n";
    if (p.test.find("def test_string(") != std::string::npos) program += "test_string(code)\n";
  } else if (p.kind == "mbpp") {
    std::string setup = p.test;
    if (!setup.empty() && setup.back() != '\n') setup += "\n";
    program = code + "\n\n" + setup + joined(p.test_list);
  } else {
    program = code + "\n\n" + p.test + "\n\ncheck(" + p.entry_point + ")\n";
  }
  if (!marker.empty()) program += "\nprint(\"\\n" + marker + "\", flush=True)\n";
  return program;
}

SandboxLimits test_limits_for(const std::vector<const Problem*>& problems, SandboxLimits limits) {
  for (const Problem* p : problems) {
    if (p->kind != "multipl-e") continue;
    limits.memory_bytes = std::max<int64_t>(limits.memory_bytes, int64_t{16} << 30);
    limits.timeout_s = std::max(limits.timeout_s, 40.0);  // the runner's own 30 s, plus start-up
    break;
  }
  return limits;
}

std::string new_test_marker() {
  std::random_device rd;
  std::ostringstream os;
  os << "xft-tests-done-" << std::hex << rd() << rd() << rd();
  return os.str();
}

void require_test_marker(std::vector<SandboxResult>& results, const std::string& marker) {
  for (auto& r : results) {
    const size_t error = r.output_tail.find(marker + ":error:");
    if (error != std::string::npos) {
      const size_t from = error + marker.size() + 7;
      fail("eval: the evaluator failed (not a verdict on the sample; nothing was scored): ",
           r.output_tail.substr(from, r.output_tail.find('\n', from) - from));
    }
    if (r.passed && r.output_tail.find(marker) == std::string::npos) {
      r.passed = false;
      r.status = "failed";
      r.output_tail += "\n[xft: the program exited 0 before its tests finished]";
    }
  }
}

}  // namespace xft
