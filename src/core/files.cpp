#include "xft/core/files.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ftw.h>
#include <sstream>
#include <unistd.h>

#include "xft/core/error.h"

namespace fs = std::filesystem;

namespace xft {

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  XFT_CHECK(in.good(), path, ": cannot open for reading");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is the offset of the error: turn it into a line number for the user.
    const std::string text = ss.str();
    const size_t upto = std::min<size_t>(e.byte, text.size());
    const long line = 1 + std::count(text.begin(), text.begin() + upto, '\n');
    fail(path, ":", line, ": invalid JSON (", e.what(), ")");
  } catch (const nlohmann::json::exception& e) {  // e.g. a number past double's range: 1e400
    fail(path, ": invalid JSON (", e.what(), ")");
  }
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    XFT_CHECK(out.good(), tmp, ": cannot open for writing");
    out << text;
    out.flush();
    XFT_CHECK(out.good(), tmp, ": write failed");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp);
    fail(path, ": cannot rename temporary file into place: ", ec.message());
  }
}

void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  // Depth first (FTW_DEPTH) so directories are empty when removed; links are not followed.
  const int rc = ::nftw(
      path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 32,
      FTW_DEPTH | FTW_PHYS);
  XFT_CHECK(rc == 0, path, ": cannot remove: ", std::strerror(errno));
}

}  // namespace xft
