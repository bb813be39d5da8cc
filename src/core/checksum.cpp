#include "xft/core/checksum.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "xft/core/error.h"

namespace xft {

FileDigest crc32_of_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  XFT_CHECK(fd >= 0, path, ": cannot open to checksum it: ", std::strerror(errno));
  std::vector<unsigned char> buf(1 << 20);
  FileDigest d;
  uLong crc = ::crc32(0L, Z_NULL, 0);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      XFT_CHECK(n == 0, path, ": read failed while checksumming: ", std::strerror(err));
      break;
    }
    crc = ::crc32(crc, buf.data(), static_cast<uInt>(n));
    d.bytes += static_cast<uint64_t>(n);
  }
  d.crc32 = static_cast<uint32_t>(crc);
  return d;
}

}  // namespace xft
