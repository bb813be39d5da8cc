#include "xft/core/files.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/atomic_writer.h"
#include "xft/core/error.h"

namespace xft {

nlohmann::json read_json_file(const std::string& path) {
  // A device or a pipe (an include of /dev/zero) would be read until memory runs out.
  XFT_CHECK(!std::filesystem::exists(path) || std::filesystem::is_regular_file(path), path,
            ": not a regular file (expected a JSON file)");
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

std::string describe_write_error(int err) {
  std::string s = std::strerror(err);
  if (err == ENOSPC) s += " (the disk is full)";
  if (err == EFBIG) s += " (the file size limit, ulimit -f, was hit)";
  if (err == EDQUOT) s += " (the disk quota is used up)";
  return s;
}

void write_file_atomic(const std::string& path, const std::string& text) {
  AtomicWriter w(path);
  w.write(text.data(), text.size());
  w.commit();
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  XFT_CHECK(fd >= 0, dir, ": cannot open the directory to sync it: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  XFT_CHECK(rc == 0, dir, ": fsync of the directory failed: ", describe_write_error(err));
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
