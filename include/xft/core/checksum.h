// defines: crc32_of_file, FileDigest
//
// CRC32 (zlib's, the polynomial of gzip and zip) detects a truncated file and any burst of
// flipped bits up to 32 long, at disk speed; it is not meant to resist tampering.
#pragma once
#include <cstdint>
#include <string>

namespace xft {

struct FileDigest {
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
};

// Reads the whole file; an unreadable file is an xft::Error naming it.
FileDigest crc32_of_file(const std::string& path);

}  // namespace xft
