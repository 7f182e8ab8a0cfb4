// mixprec version: the one place the version number lives (CMake reads it from here).
#pragma once

#define MIXPREC_VERSION_MAJOR 0
#define MIXPREC_VERSION_MINOR 4
#define MIXPREC_VERSION_PATCH 0

namespace mixprec {
inline constexpr int version_major = MIXPREC_VERSION_MAJOR;
inline constexpr int version_minor = MIXPREC_VERSION_MINOR;
inline constexpr int version_patch = MIXPREC_VERSION_PATCH;
inline constexpr const char* version_string = "0.4.0";
}  // namespace mixprec
