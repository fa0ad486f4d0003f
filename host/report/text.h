// Small text helpers shared by the reports (console, HTML, JUnit) and `divscope diff`.
#pragma once
#include <cstdio>
#include <string>

namespace divscope {

// printf-style formatting of one number ("%.3e", "%.2f", ...).
inline std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Left-aligned (pad) and right-aligned (rpad) in a column of width w.
inline std::string pad(const std::string& s, size_t w) {
  return s.size() >= w ? s : s + std::string(w - s.size(), ' ');
}
inline std::string rpad(const std::string& s, size_t w) {
  return s.size() >= w ? s : std::string(w - s.size(), ' ') + s;
}

// Escape for XML and HTML text and attribute values (layer names come from user files).
inline std::string markup_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      case '\t': case '\n': case '\r': o += c; break;
      default:
        // XML 1.0 cannot hold other control characters, not even as references: a layer name
        // with one would make the JUnit file unparseable. U+FFFD stands in for it.
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) o += "\xEF\xBF\xBD";
        else o += c;
    }
  }
  return o;
}

}  // namespace divscope
