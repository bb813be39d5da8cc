// defines: xft::Error, XFT_CHECK
// Every user-facing failure (bad file, bad config, bad tensor) is an xft::Error whose message
// names the file, line or tensor and says what was expected.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace xft {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  throw Error(os.str());
}

}  // namespace xft

// XFT_CHECK(cond, "file ", path, ": expected ...") throws xft::Error with the joined message.
#define XFT_CHECK(cond, ...)               \
  do {                                     \
    if (!(cond)) ::xft::fail(__VA_ARGS__); \
  } while (0)
