#include "core/atomic_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "xft/core/error.h"
#include "xft/core/files.h"

namespace xft {

AtomicWriter::AtomicWriter(const std::string& path) : path_(path), tmp_(path + ".tmp." + std::to_string(::getpid())) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  XFT_CHECK(fd_ >= 0, "cannot create ", tmp_, " to write ", path_, ": ", describe_write_error(errno));
}

AtomicWriter::~AtomicWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicWriter::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    // write() returning 0 for n > 0 would loop forever; treat it as the device refusing.
    XFT_CHECK(w > 0, "writing ", path_, " failed: ", describe_write_error(w == 0 ? ENOSPC : errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicWriter::commit() {
  // Some file systems report a full disk only at fsync or close (delayed allocation, NFS).
  XFT_CHECK(::fsync(fd_) == 0, "writing ", path_, " failed at fsync: ", describe_write_error(errno));
  const int rc = ::close(fd_);
  fd_ = -1;
  XFT_CHECK(rc == 0, "writing ", path_, " failed at close: ", describe_write_error(errno));
  XFT_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, "cannot rename ", tmp_, " to ", path_, ": ",
            std::strerror(errno));
  committed_ = true;
}

}  // namespace xft
