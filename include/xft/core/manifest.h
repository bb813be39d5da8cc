// defines: kManifestFile, write_manifest, manifest_damage, verify_manifest
//
// A checkpoint or an exported model directory carries `checksums.json`: the size and CRC32 of
// every file in it, written last, after the files themselves. A reader compares them before it
// trusts anything, so a truncated or bit-flipped file is reported by name instead of loading as
// garbage weights. A directory without the file (written before xft kept checksums, or by
// another tool) is not verified and loads as before.
//
//   {"format": "xft-checksums", "version": 1,
//    "files": {"model.safetensors": {"bytes": 1234, "crc32": "89abcdef"}, ...}}
#pragma once
#include <string>

namespace xft {

inline constexpr const char* kManifestFile = "checksums.json";

// Checksums every regular file directly in `dir` (not the manifest itself, not a writer's
// `*.tmp.*` temporary) and writes dir/checksums.json atomically.
void write_manifest(const std::string& dir);

// Empty when `dir` has no manifest or every file it lists is whole; otherwise what is wrong,
// naming the file (missing, wrong size, wrong checksum, or an unreadable manifest).
std::string manifest_damage(const std::string& dir);

// Throws xft::Error with manifest_damage's text when there is damage.
void verify_manifest(const std::string& dir);

}  // namespace xft
