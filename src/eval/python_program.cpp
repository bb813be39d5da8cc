#include "eval/python_program.h"

#include <algorithm>
#include <cstdint>

namespace xft {

namespace {

std::string base64(const std::string& bytes) {
  static const char* const kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t v = 0;
    for (size_t j = 0; j < 3; ++j) v = (v << 8) | (j < n ? static_cast<unsigned char>(bytes[i + j]) : 0u);
    for (size_t j = 0; j < 4; ++j) out += j <= n ? kAlphabet[(v >> (18 - 6 * j)) & 63] : '=';
  }
  return out;
}

}  // namespace

std::string python_program(const nlohmann::json& args, const char* body) {
  const std::string text = args.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return "ARGS = \"" + base64(text) + "\"\n" + body;
}

}  // namespace xft
