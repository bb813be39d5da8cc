#include "xft/core/manifest.h"

#include <cstdio>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "xft/core/checksum.h"
#include "xft/core/error.h"
#include "xft/core/files.h"

namespace fs = std::filesystem;

namespace xft {

namespace {

constexpr const char* kFormat = "xft-checksums";

std::string hex32(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

// Files a manifest covers: regular files directly in dir, except itself and temporaries.
bool covered(const fs::directory_entry& e) {
  const std::string name = e.path().filename().string();
  return e.is_regular_file() && name != kManifestFile && name.find(".tmp.") == std::string::npos;
}

// What is wrong with one listed file, or "".
std::string file_damage(const fs::path& dir, const std::string& name, const nlohmann::json& want) {
  const fs::path p = dir / name;
  if (!want.is_object() || !want.contains("bytes") || !want["bytes"].is_number_unsigned() || !want.contains("crc32") ||
      !want["crc32"].is_string())
    return (dir / kManifestFile).string() + ": entry '" + name + "' is malformed";
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return p.string() + ": missing (" + kManifestFile + " lists it)";
  const auto bytes = want["bytes"].get<uint64_t>();
  const auto size = fs::file_size(p, ec);
  if (ec) return p.string() + ": cannot read its size: " + ec.message();
  if (size != bytes)
    return p.string() + ": " + std::to_string(size) + " bytes, but " + kManifestFile + " records " +
           std::to_string(bytes) + (size < bytes ? " (truncated)" : "");
  const FileDigest d = crc32_of_file(p.string());
  if (hex32(d.crc32) != want["crc32"].get<std::string>())
    return p.string() + ": CRC32 " + hex32(d.crc32) + " differs from " + want["crc32"].get<std::string>() +
           " recorded in " + kManifestFile + " (the file is damaged)";
  return "";
}

}  // namespace

void write_manifest(const std::string& dir) {
  std::map<std::string, nlohmann::json> files;  // sorted, so the manifest is reproducible
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!covered(e)) continue;
    const FileDigest d = crc32_of_file(e.path().string());
    files[e.path().filename().string()] = {{"bytes", d.bytes}, {"crc32", hex32(d.crc32)}};
  }
  const nlohmann::json j = {{"format", kFormat}, {"version", 1}, {"files", files}};
  write_file_atomic((fs::path(dir) / kManifestFile).string(), j.dump(2) + "\n");
}

std::string manifest_damage(const std::string& dir) {
  const fs::path path = fs::path(dir) / kManifestFile;
  std::error_code ec;
  if (!fs::exists(path, ec)) return "";
  nlohmann::json j;
  try {
    j = read_json_file(path.string());
  } catch (const Error& e) {
    return e.what();
  }
  if (!j.is_object() || j.value("format", "") != kFormat || !j.contains("files") || !j["files"].is_object())
    return path.string() + ": not an xft checksums file (expected {\"format\": \"xft-checksums\", \"files\": {...}})";
  for (const auto& [name, want] : j["files"].items()) {
    // A listed name is a plain file name: "../x" or "a/b" would check something outside dir.
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      return path.string() + ": entry '" + name + "' is not a file name";
    std::string damage = file_damage(dir, name, want);
    if (!damage.empty()) return damage;
  }
  return "";
}

void verify_manifest(const std::string& dir) {
  const std::string damage = manifest_damage(dir);
  XFT_CHECK(damage.empty(), damage);
}

}  // namespace xft
