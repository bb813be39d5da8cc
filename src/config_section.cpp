#include "xft/config_section.h"

#include "xft/error.h"

namespace xft {

nlohmann::json overlay_section(nlohmann::json defaults, const nlohmann::json& section, const std::string& source,
                               const std::string& what) {
  XFT_CHECK(section.is_object(), source, ": a ", what, " section must be an object, got ", section.type_name());
  for (const auto& [k, v] : section.items()) {
    if (!defaults.contains(k)) {
      std::string known;
      for (const auto& [name, unused] : defaults.items()) known += (known.empty() ? "" : ", ") + name;
      fail(source, ": unknown ", what, " field '", k, "' (known: ", known, ")");
    }
    auto& d = defaults[k];
    XFT_CHECK(std::string(d.type_name()) == v.type_name() || (d.is_number() && v.is_number()), source, ": ", what,
              " field '", k, "' should be ", d.type_name(), ", got ", v.type_name());
    d = v;
  }
  return defaults;
}

}  // namespace xft
