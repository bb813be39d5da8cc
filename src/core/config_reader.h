// defines: ConfigReader<S> (the one way a config section is read and written), EnumNames
//
// Every JSON config section (moe, merge, ewa, data, upcycle, the training sections, distributed)
// is a plain struct whose member initialisers are its defaults. Its .cpp lists the fields once:
//
//   const ConfigReader<EwaConfig>& reader() {
//     static const ConfigReader<EwaConfig> r = ConfigReader<EwaConfig>("ewa")
//         .field("beta", &EwaConfig::beta)
//         .field("schedule", &EwaConfig::schedule, kEwaScheduleNames);
//     return r;
//   }
//
// and from_json / to_json are read() / write() over that table. read() starts from the struct's
// defaults, rejects an unknown key (listing the known ones), a value of the wrong JSON type and a
// string setting outside its enum (listing the allowed names), each error naming the source file
// and "section.field"; a null value keeps the default.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "xft/core/error.h"

namespace xft {

// The spelling of each value of an enum setting, in the order the messages list them.
template <typename E>
using EnumNames = std::vector<std::pair<const char*, E>>;

template <typename E>
const char* enum_name(const EnumNames<E>& names, E value) {
  for (const auto& [n, v] : names)
    if (v == value) return n;
  return "?";
}

template <typename E>
std::string enum_choices(const EnumNames<E>& names) {
  std::string out;
  for (const auto& [n, v] : names) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

// The enum value spelled `text`; an error naming `where` and the allowed names otherwise.
template <typename E>
E parse_enum(const EnumNames<E>& names, const std::string& text, const std::string& where) {
  for (const auto& [n, v] : names)
    if (text == n) return v;
  fail(where, " must be one of ", enum_choices(names), "; got '", text, "'");
}

template <typename S>
class ConfigReader {
 public:
  explicit ConfigReader(std::string section) : section_(std::move(section)) {}

  // A bool, integer, floating-point or string member.
  template <typename M>
  ConfigReader&& field(const char* name, M S::*member, bool required = false) && {
    fields_.push_back({name, required,
                       [member](S& s, const nlohmann::json& v, const std::string&, const std::string& at) {
                         s.*member = convert<M>(v, at);
                       },
                       [member](const S& s) { return nlohmann::json(s.*member); }});
    return std::move(*this);
  }

  // A string setting stored as an enum.
  template <typename E>
  ConfigReader&& field(const char* name, E S::*member, const EnumNames<E>& names) && {
    fields_.push_back({name, false,
                       [member, &names](S& s, const nlohmann::json& v, const std::string&, const std::string& at) {
                         XFT_CHECK(v.is_string(), at, " must be a string (one of ", enum_choices(names), "), got ",
                                   v.type_name());
                         s.*member = parse_enum(names, v.get<std::string>(), at);
                       },
                       [member, &names](const S& s) { return nlohmann::json(enum_name(names, s.*member)); }});
    return std::move(*this);
  }

  // A nested section (an object read by its own reader): read(s, value, source) and write(s).
  ConfigReader&& section(const char* name,
                         std::function<void(S&, const nlohmann::json&, const std::string& source)> read,
                         std::function<nlohmann::json(const S&)> write) && {
    fields_.push_back(
        {name, false,
         [read](S& s, const nlohmann::json& v, const std::string& source, const std::string&) { read(s, v, source); },
         std::move(write)});
    return std::move(*this);
  }

  // `init` with the keys of `j` written over it (init: the struct's defaults, or values a caller
  // derived first). `section` names it in messages (default: the reader's; the training sections
  // share one reader under four names). Does not validate across fields: the struct's validate() does.
  S read(const nlohmann::json& j, const std::string& source, S init = S{}, const std::string& section = "") const {
    const std::string sec = section.empty() ? section_ : section;
    XFT_CHECK(j.is_object(), source, ": the ", sec, " section must be an object, got ", j.type_name());
    std::string unknown;
    for (const auto& [k, v] : j.items())
      if (!find(k)) unknown += (unknown.empty() ? "'" : ", '") + k + "'";
    if (!unknown.empty()) fail(source, ": unknown ", sec, " field(s) ", unknown, " (known: ", known(), ")");
    for (const auto& [k, v] : j.items())
      if (!v.is_null()) find(k)->read(init, v, source, source + ": " + sec + "." + k);
    for (const auto& f : fields_)
      XFT_CHECK(!f.required || (j.contains(f.name) && !j.at(f.name).is_null()), source, ": missing ", sec, ".", f.name,
                " (required)");
    return init;
  }

  nlohmann::json write(const S& s) const {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& f : fields_) j[f.name] = f.write(s);
    return j;
  }

  std::string known() const {
    std::vector<std::string> names;
    for (const auto& f : fields_) names.push_back(f.name);
    std::sort(names.begin(), names.end());
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
  }

 private:
  struct Field {
    std::string name;
    bool required;
    std::function<void(S&, const nlohmann::json&, const std::string& source, const std::string& at)> read;
    std::function<nlohmann::json(const S&)> write;
  };

  const Field* find(const std::string& name) const {
    for (const auto& f : fields_)
      if (f.name == name) return &f;
    return nullptr;
  }

  template <typename M>
  static M convert(const nlohmann::json& v, const std::string& at) {
    if constexpr (std::is_same_v<M, bool>) {
      XFT_CHECK(v.is_boolean(), at, " must be a boolean, got ", v.type_name());
    } else if constexpr (std::is_integral_v<M>) {
      XFT_CHECK(v.is_number_integer(), at, " must be an integer, got ", v.is_number() ? v.dump() : v.type_name());
      if constexpr (std::is_unsigned_v<M>)
        XFT_CHECK(v.is_number_unsigned(), at, " must be a non-negative integer, got ", v.dump());
    } else if constexpr (std::is_floating_point_v<M>) {
      XFT_CHECK(v.is_number(), at, " must be a number, got ", v.type_name());
    } else {
      static_assert(std::is_same_v<M, std::string>, "ConfigReader: unsupported field type");
      XFT_CHECK(v.is_string(), at, " must be a string, got ", v.type_name());
    }
    return v.get<M>();
  }

  std::string section_;
  std::vector<Field> fields_;
};

}  // namespace xft
