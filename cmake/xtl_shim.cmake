# Debian 12's xsimd package exports `xsimd` with INTERFACE_LINK_LIBRARIES "xtl" but neither ships nor
# finds xtl (only needed for xtl::xcomplex support, which mixprec does not use), so the name would end
# up as -lxtl on the link line. Use the real xtl when installed, otherwise an empty stand-in target.
if(NOT TARGET xtl)
  find_package(xtl QUIET)
  if(NOT TARGET xtl)
    add_library(xtl INTERFACE IMPORTED GLOBAL)
  endif()
endif()
