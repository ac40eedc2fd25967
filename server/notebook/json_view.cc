#include "server/notebook/json_view.h"

#include <string>

namespace cellgate::notebook {

std::string DumpCompactJson(const nlohmann::json& json) {
  return json.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json SimdjsonView::ToNlohmann() const {
  using Type = simdjson::dom::element_type;
  switch (element_.type()) {
    case Type::ARRAY: {
      nlohmann::json json = nlohmann::json::array();
      json.get_ref<nlohmann::json::array_t&>().reserve(size());
      ForEachElement([&json](size_t, SimdjsonView element) {
        json.push_back(element.ToNlohmann());
        return absl::OkStatus();
      }).IgnoreError();
      return json;
    }
    case Type::OBJECT: {
      nlohmann::json json = nlohmann::json::object();
      // A repeated key: the last one wins, as with nlohmann's parser.
      ForEachMember([&json](absl::string_view key, SimdjsonView value) {
        json[std::string(key)] = value.ToNlohmann();
        return absl::OkStatus();
      }).IgnoreError();
      return json;
    }
    case Type::INT64: return nlohmann::json(element_.get_int64().value_unsafe());
    case Type::UINT64: return nlohmann::json(element_.get_uint64().value_unsafe());
    case Type::DOUBLE: return nlohmann::json(element_.get_double().value_unsafe());
    case Type::STRING: return nlohmann::json(std::string(string()));
    case Type::BOOL: return nlohmann::json(boolean());
    case Type::NULL_VALUE: break;
  }
  return nlohmann::json();
}

}  // namespace cellgate::notebook
