#include "xft/data/instruction_data.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <type_traits>

#include "core/config_reader.h"
#include "data/chat_examples.h"
#include "xft/core/error.h"
#include "xft/data/batcher.h"
#include "xft/data/tokenizer.h"
#include "xft/model/config.h"

using nlohmann::json;

namespace xft {

// ---------------------------------------------------------------------------------------------
// DataConfig

namespace {

const EnumNames<DataFormat> kFormatNames = {{"auto", DataFormat::kAuto},
                                            {"jsonl", DataFormat::kJsonl},
                                            {"json", DataFormat::kJson},
                                            {"pretokenized", DataFormat::kPretokenized},
                                            {"messages", DataFormat::kMessages}};

// "path": one file, or a list of files, each a path or {"path", "weight"} (a weighted mix).
void read_path(DataConfig& c, const json& v, const std::string& source) {
  c.path.clear();
  c.files.clear();
  if (v.is_string()) {
    c.path = v.get<std::string>();
    return;
  }
  XFT_CHECK(v.is_array(), source, ": data.path must be a file name or a list of files (each a name or ",
            "{\"path\": ..., \"weight\": ...}), got ", v.type_name());
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string at = source + ": data.path[" + std::to_string(i) + "]";
    DataFile f;
    if (v[i].is_string()) {
      f.path = v[i].get<std::string>();
    } else {
      XFT_CHECK(v[i].is_object(), at, " must be a file name or {\"path\", \"weight\"}, got ", v[i].type_name());
      for (const auto& [k, x] : v[i].items())
        XFT_CHECK(k == "path" || k == "weight", at, ": unknown field '", k, "' (known: path, weight)");
      XFT_CHECK(v[i].contains("path") && v[i].at("path").is_string(), at, ".path must be a string");
      f.path = v[i].at("path").get<std::string>();
      if (v[i].contains("weight")) {
        XFT_CHECK(v[i].at("weight").is_number(), at, ".weight must be a number, got ", v[i].at("weight").type_name());
        f.weight = v[i].at("weight").get<double>();
      }
    }
    c.files.push_back(f);
  }
}

json write_path(const DataConfig& c) {
  if (c.files.empty()) return c.path;
  json list = json::array();
  for (const auto& f : c.files) list.push_back({{"path", f.path}, {"weight", f.weight}});
  return list;
}

const ConfigReader<DataConfig>& data_reader() {
  static const ConfigReader<DataConfig> r = ConfigReader<DataConfig>("data")
                                                .section("path", read_path, write_path)
                                                .field("format", &DataConfig::format, kFormatNames)
                                                .field("instruction_field", &DataConfig::instruction_field)
                                                .field("input_field", &DataConfig::input_field)
                                                .field("response_field", &DataConfig::response_field)
                                                .field("input_template", &DataConfig::input_template)
                                                .field("prompt_template", &DataConfig::prompt_template)
                                                .field("max_length", &DataConfig::max_length)
                                                .field("strict", &DataConfig::strict)
                                                .field("packing", &DataConfig::packing)
                                                .field("bos_id", &DataConfig::bos_id)
                                                .field("eos_id", &DataConfig::eos_id);
  return r;
}

}  // namespace

const char* to_string(DataFormat format) { return enum_name(kFormatNames, format); }

void DataConfig::validate(const std::string& source) const {
  XFT_CHECK(!path.empty() || !files.empty(), source,
            ": data 'path' is empty; expected a .jsonl or .json file (or a list of them)");
  XFT_CHECK(path.empty() || files.empty(), source, ": data has both a 'path' and a list of files; give one");
  for (size_t i = 0; i < files.size(); ++i) {
    XFT_CHECK(!files[i].path.empty(), source, ": data.path[", i, "] is an empty file name");
    XFT_CHECK(std::isfinite(files[i].weight) && files[i].weight > 0.0, source, ": data.path[", i, "] (", files[i].path,
              ") has weight ", files[i].weight, "; expected a number > 0");
  }
  XFT_CHECK(!instruction_field.empty() && !response_field.empty(), source,
            ": data 'instruction_field' and 'response_field' must be non-empty field names");
  XFT_CHECK(prompt_template.find("{instruction}") != std::string::npos, source,
            ": data 'prompt_template' lacks '{instruction}'; expected it once where the instruction goes");
  XFT_CHECK(
      input_template.find("{instruction}") != std::string::npos && input_template.find("{input}") != std::string::npos,
      source, ": data 'input_template' must contain both '{instruction}' and '{input}'");
  XFT_CHECK(max_length >= 2, source, ": data 'max_length' is ", max_length, "; expected >= 2 (BOS/EOS included)");
  if (format == DataFormat::kPretokenized) {
    XFT_CHECK(bos_id >= 0 && eos_id >= 0, source, ": data 'bos_id' and 'eos_id' are ", bos_id, " and ", eos_id,
              "; the pretokenized format needs both >= 0 (they are added around each record)");
  }
}

json DataConfig::to_json() const { return data_reader().write(*this); }

DataConfig DataConfig::from_json(const json& j, const std::string& source) {
  DataConfig c = data_reader().read(j, source);
  c.validate(source);
  return c;
}

// ---------------------------------------------------------------------------------------------
// DataReport

std::string skip_kind(const std::string& reason) {
  const auto cut = std::min(reason.find(" ("), reason.find(';'));
  return reason.substr(0, cut);
}

std::string DataReport::summary() const {
  std::ostringstream os;
  os << path << ": " << records << " records, " << used << " used, " << skipped << " skipped";
  if (!files.empty()) {
    for (size_t i = 0; i < files.size(); ++i)
      os << "\n" << files[i].summary() << "\n  -> " << mixed[i] << " examples an epoch after weighting";
    return os.str();
  }
  if (skipped_records.empty()) return os.str();
  // A newcomer's data set may skip hundreds of over-long prompts: count them by reason, list a few.
  std::vector<std::pair<std::string, int64_t>> kinds;
  for (const auto& r : skipped_records) {
    const auto kind = skip_kind(r.reason);
    auto it = std::find_if(kinds.begin(), kinds.end(), [&](const auto& k) { return k.first == kind; });
    if (it == kinds.end())
      kinds.emplace_back(kind, 1);
    else
      ++it->second;
  }
  os << " (";
  for (size_t i = 0; i < kinds.size(); ++i) os << (i ? ", " : "") << kinds[i].second << " " << kinds[i].first;
  os << "); the first (1-based " << (array_elements ? "array elements" : "line numbers") << "):";
  const size_t shown = std::min<size_t>(skipped_records.size(), 5);
  for (size_t i = 0; i < shown; ++i)
    os << "\n  " << path << ":" << skipped_records[i].line << ": " << skipped_records[i].reason;
  if (skipped_records.size() > shown) os << "\n  ... and " << skipped_records.size() - shown << " more";
  return os.str();
}

// ---------------------------------------------------------------------------------------------
// Records -> examples

namespace {

bool blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char ch) { return std::isspace(ch) != 0; });
}

// Single pass, so text substituted for one placeholder is never scanned for another.
std::string fill(const std::string& tmpl, const std::vector<std::pair<std::string, const std::string*>>& vars) {
  std::string out;
  for (size_t i = 0; i < tmpl.size();) {
    bool replaced = false;
    for (const auto& [key, value] : vars) {
      if (tmpl.compare(i, key.size(), key) == 0) {
        out += *value;
        i += key.size();
        replaced = true;
        break;
      }
    }
    if (!replaced) out += tmpl[i++];
  }
  return out;
}

// A missing / non-string field yields a reason; `optional` fields may also be absent or null.
std::string get_string(const json& rec, const std::string& key, bool optional, std::string* out, bool* present) {
  *present = rec.contains(key) && !(optional && rec.at(key).is_null());
  if (!*present) return optional ? "" : "missing field '" + key + "'";
  const json& v = rec.at(key);
  if (!v.is_string()) return "field '" + key + "' is " + v.type_name() + "; expected a string";
  *out = v.get<std::string>();
  return "";
}

std::string get_ids(const json& rec, const std::string& key, int64_t vocab, std::vector<int64_t>* out) {
  if (!rec.contains(key)) return "missing field '" + key + "'";
  const json& v = rec.at(key);
  if (!v.is_array()) return "field '" + key + "' is " + std::string(v.type_name()) + "; expected an array of token ids";
  for (size_t i = 0; i < v.size(); ++i) {
    const bool ok = v[i].is_number_integer() && v[i].get<int64_t>() >= 0 && (vocab < 0 || v[i].get<int64_t>() < vocab);
    if (!ok) {
      return "field '" + key + "' element " + std::to_string(i) + " (" + v[i].dump() +
             ") is not a token id; expected an integer in [0, " + (vocab < 0 ? "vocab_size" : std::to_string(vocab)) +
             ")";
    }
    out->push_back(v[i].get<int64_t>());
  }
  return "";
}

// [bos] + prompt (ignored by the loss), then response + [eos] (learned), cut to max_length.
std::string assemble(const std::vector<int64_t>& prompt, const std::vector<int64_t>& response, int64_t bos, int64_t eos,
                     int64_t max_length, Example* ex) {
  if (bos >= 0) ex->input_ids.push_back(bos);
  ex->input_ids.insert(ex->input_ids.end(), prompt.begin(), prompt.end());
  const int64_t prompt_len = static_cast<int64_t>(ex->input_ids.size());
  if (prompt_len >= max_length) {
    return "prompt too long (" + std::to_string(prompt_len) + " tokens with BOS; max_length " +
           std::to_string(max_length) + " leaves no room for the response)";
  }
  ex->input_ids.insert(ex->input_ids.end(), response.begin(), response.end());
  ex->input_ids.push_back(eos);
  if (static_cast<int64_t>(ex->input_ids.size()) > max_length) ex->input_ids.resize(static_cast<size_t>(max_length));
  ex->labels = ex->input_ids;
  std::fill(ex->labels.begin(), ex->labels.begin() + prompt_len, kIgnoreLabel);
  return "";
}

std::string make_text_example(const json& rec, const DataConfig& c, const Tokenizer& tok, Example* ex) {
  std::string instruction, input, response;
  bool present = false;
  if (auto r = get_string(rec, c.instruction_field, false, &instruction, &present); !r.empty()) return r;
  if (auto r = get_string(rec, c.response_field, false, &response, &present); !r.empty()) return r;
  if (blank(response)) return "empty response (field '" + c.response_field + "')";
  if (!c.input_field.empty()) {
    if (auto r = get_string(rec, c.input_field, true, &input, &present); !r.empty()) return r;
    if (present && !blank(input))
      instruction = fill(c.input_template, {{"{instruction}", &instruction}, {"{input}", &input}});
  }
  const std::string prompt = fill(c.prompt_template, {{"{instruction}", &instruction}});
  // Encoded apart so the prompt/response boundary falls exactly between two tokens.
  return assemble(tok.encode(prompt), tok.encode(response), tok.bos_id(), tok.eos_id(), c.max_length, ex);
}

std::string make_pretokenized_example(const json& rec, const DataConfig& c, int64_t vocab, Example* ex) {
  std::vector<int64_t> prompt, response;
  if (auto r = get_ids(rec, "prompt_ids", vocab, &prompt); !r.empty()) return r;
  if (auto r = get_ids(rec, "response_ids", vocab, &response); !r.empty()) return r;
  if (response.empty()) return "empty response (field 'response_ids')";
  return assemble(prompt, response, c.bos_id, c.eos_id, c.max_length, ex);
}

// nlohmann's message repeats "line 1" (each JSONL line is parsed alone) and quotes the bytes it
// read, which may be invalid UTF-8 or a whole line: keep it short and printable.
// Also for the other exceptions the parser throws: a number past double's range (1e400) is
// out_of_range, not parse_error, and must skip its record like any other malformed line.
std::string parse_reason(const json::exception& e) {
  std::string msg = e.what();
  if (const auto p = msg.find("] "); p != std::string::npos) msg = msg.substr(p + 2);
  if (const auto p = msg.find("at line 1, column"); p != std::string::npos) msg.replace(p, 17, "at column");
  for (char& ch : msg) {
    if (static_cast<unsigned char>(ch) < 0x20 || static_cast<unsigned char>(ch) >= 0x7F) ch = '?';
  }
  if (msg.size() > 200) msg = msg.substr(0, 200) + "...";
  return "invalid JSON (" + msg + ")";
}

std::ifstream open_data(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  XFT_CHECK(in.good(), path, ": cannot open the data file for reading");
  return in;
}

// JSON array or JSONL: the first non-space character decides, the extension only when it cannot.
bool is_json_array(const DataConfig& c) {
  if (c.format == DataFormat::kJson) return true;
  if (c.format == DataFormat::kJsonl) return false;
  std::ifstream in = open_data(c.path);
  std::string head(3, '\0');
  in.read(&head[0], 3);
  in.clear();
  if (head != "\xEF\xBB\xBF") in.seekg(0);  // skip the UTF-8 byte-order mark some editors write
  in >> std::ws;
  const int ch = in.peek();
  if (ch == '[' || ch == '{') return ch == '[';
  const std::string& f = c.path;
  return f.size() >= 5 && f.compare(f.size() - 5, 5, ".json") == 0;
}

// Calls fn(number, record or nullptr, parse-failure reason) for each non-blank line / array element.
// JSONL is streamed line by line: instruction sets run to hundreds of MB.
void for_each_record(const DataConfig& c, bool array,
                     const std::function<void(int64_t, const json*, const std::string&)>& fn) {
  if (array) {
    const json all = read_json_file(c.path);  // a broken array cannot be resynchronised: fatal, with its line
    XFT_CHECK(all.is_array(), c.path, ": the top-level value is ", all.type_name(),
              "; expected a JSON array of records (or use JSONL: one object a line)");
    for (size_t i = 0; i < all.size(); ++i) fn(static_cast<int64_t>(i) + 1, &all[i], "");
    return;
  }
  std::ifstream in = open_data(c.path);
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (number == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);  // byte-order mark
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (blank(line)) continue;
    json rec;
    std::string problem;
    try {
      rec = json::parse(line);
    } catch (const json::exception& e) {
      problem = parse_reason(e);
    }
    fn(number, problem.empty() ? &rec : nullptr, problem);
  }
  XFT_CHECK(in.eof(), c.path, ": read error after line ", number);
}

}  // namespace

InstructionDataset InstructionDataset::load(const DataConfig& config, const Tokenizer* tokenizer,
                                            const ConversationRenderer& render) {
  config.validate(config.files.empty() ? config.path : "data");
  if (!config.files.empty()) {
    // A weighted mix: each file read as if alone, then its examples taken floor(weight) times
    // plus a seeded share of the fraction (seed: the file's place in the list), in list order;
    // the batcher shuffles them per epoch.
    InstructionDataset mix;
    DataReport& rep = mix.report_;
    rep.path = "data mix of " + std::to_string(config.files.size()) + " files";
    for (size_t i = 0; i < config.files.size(); ++i) {
      DataConfig one = config;
      one.files.clear();
      one.path = config.files[i].path;
      const auto part = load(one, tokenizer, render);
      const double w = config.files[i].weight;
      const auto copies = static_cast<int64_t>(std::floor(w));
      for (int64_t k = 0; k < copies; ++k)
        mix.examples_.insert(mix.examples_.end(), part.examples_.begin(), part.examples_.end());
      std::vector<int64_t> order(part.size());
      for (size_t k = 0; k < order.size(); ++k) order[k] = static_cast<int64_t>(k);
      std::mt19937_64 gen(i);
      shuffle_in_place(order, gen);
      order.resize(
          static_cast<size_t>(std::llround((w - static_cast<double>(copies)) * static_cast<double>(part.size()))));
      std::sort(order.begin(), order.end());
      for (int64_t k : order) mix.examples_.push_back(part.examples_[static_cast<size_t>(k)]);
      rep.records += part.report_.records;
      rep.used += part.report_.used;
      rep.skipped += part.report_.skipped;
      rep.files.push_back(part.report_);
      rep.mixed.push_back(static_cast<int64_t>(copies * static_cast<int64_t>(part.size())) +
                          static_cast<int64_t>(order.size()));
    }
    XFT_CHECK(!mix.examples_.empty(), rep.path, ": the weights leave no example (", rep.summary(), ")");
    return mix;
  }
  const bool messages = config.format == DataFormat::kMessages;
  XFT_CHECK(!messages || render != nullptr, config.path,
            ": format 'messages' renders conversations with the model's chat template; none was given");
  const bool pretokenized = config.format == DataFormat::kPretokenized;
  XFT_CHECK(pretokenized || tokenizer != nullptr, config.path, ": a tokenizer is needed for format '",
            to_string(config.format), "' (only 'pretokenized' works without one)");
  const bool array = is_json_array(config);
  const int64_t vocab = tokenizer ? tokenizer->vocab_size() : -1;

  InstructionDataset data;
  DataReport& rep = data.report_;
  rep.path = config.path;
  rep.array_elements = array;
  auto skip = [&](int64_t number, const std::string& reason) {
    if (config.strict) {
      fail(config.path, array ? ": element " : ":", number, ": ", reason,
           " (strict mode; set strict=false to skip records that cannot be used)");
    }
    ++rep.skipped;
    rep.skipped_records.push_back({number, reason});
  };
  std::vector<Conversation> conversations;  // messages: rendered all at once after the read
  std::vector<int64_t> conversation_records;
  for_each_record(config, array, [&](int64_t number, const json* rec, const std::string& parse_problem) {
    ++rep.records;
    Example ex;
    std::string reason = parse_problem;
    if (reason.empty() && !rec->is_object()) reason = std::string("not a JSON object (found ") + rec->type_name() + ")";
    if (reason.empty() && messages) {
      Conversation conversation;
      reason = parse_conversation(*rec, &conversation);
      if (reason.empty()) {
        conversations.push_back(std::move(conversation));
        conversation_records.push_back(number);
        return;
      }
    } else if (reason.empty()) {
      reason = pretokenized ? make_pretokenized_example(*rec, config, vocab, &ex)
                            : make_text_example(*rec, config, *tokenizer, &ex);
    }
    if (reason.empty()) {
      data.examples_.push_back(std::move(ex));
      ++rep.used;
      return;
    }
    skip(number, reason);
  });
  if (!conversations.empty()) {
    std::vector<Example> made;
    const auto reasons = make_chat_examples(conversations, render, *tokenizer, config.max_length, &made);
    size_t next = 0;
    for (size_t i = 0; i < conversations.size(); ++i) {
      if (!reasons[i].empty()) {
        skip(conversation_records[i], reasons[i]);
        continue;
      }
      data.examples_.push_back(std::move(made[next++]));
      ++rep.used;
    }
    std::stable_sort(rep.skipped_records.begin(), rep.skipped_records.end(),
                     [](const SkippedRecord& a, const SkippedRecord& b) { return a.line < b.line; });
  }
  XFT_CHECK(rep.used > 0, config.path, ": no usable record (", rep.records, " records, ", rep.skipped_records.size(),
            " skipped); expected at least one valid record\n", rep.summary());
  return data;
}

const Example& InstructionDataset::operator[](size_t i) const {
  XFT_CHECK(i < examples_.size(), report_.path, ": example index ", i, " is out of range; expected < ",
            examples_.size());
  return examples_[i];
}

std::vector<int64_t> InstructionDataset::lengths() const {
  std::vector<int64_t> out;
  out.reserve(examples_.size());
  for (const auto& ex : examples_) out.push_back(static_cast<int64_t>(ex.input_ids.size()));
  return out;
}

std::pair<InstructionDataset, InstructionDataset> InstructionDataset::split(size_t n_heldout, uint64_t seed) const {
  XFT_CHECK(n_heldout < examples_.size(), report_.path, ": cannot hold out ", n_heldout, " of ", examples_.size(),
            " examples; expected fewer than the dataset size");
  std::vector<int64_t> order(examples_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  std::mt19937_64 gen(seed);
  shuffle_in_place(order, gen);
  const auto cut = order.end() - static_cast<std::ptrdiff_t>(n_heldout);
  // File order inside each part: evaluation output then reads in the order of the data file.
  std::sort(order.begin(), cut);
  std::sort(cut, order.end());
  std::pair<InstructionDataset, InstructionDataset> parts;
  parts.first.report_ = parts.second.report_ = report_;
  for (auto it = order.begin(); it != order.end(); ++it) {
    (it < cut ? parts.first : parts.second).examples_.push_back(examples_[static_cast<size_t>(*it)]);
  }
  return parts;
}

}  // namespace xft
