// The sanitizers' defaults for divscope's programs in a -DDIVSCOPE_SANITIZE=ON build
// (docs/testing.md, Sanitizers); ASAN_OPTIONS / UBSAN_OPTIONS / LSAN_OPTIONS still override them.
// A finding exits 86: never one of divscope's own codes, so a test that expects exit 1
// (divergence) cannot pass over a sanitizer report. Compiled twice: for divscope and the tests,
// and with DIVSCOPE_FUZZ_TARGET for the fuzz targets, which keep libhdf5's faults visible
// (tools/asan.supp says why the others do not).

extern "C" const char* __asan_default_options() {
  // print_suppressions=0: a suppressed libhdf5 fault must not add lines to a one-line error.
  return "exitcode=86:detect_leaks=1:check_initialization_order=1:strict_init_order=1:"
         "detect_stack_use_after_return=1:print_suppressions=0"
#ifndef DIVSCOPE_FUZZ_TARGET
         ":suppressions=" DIVSCOPE_SOURCE_DIR "/tools/asan.supp"
#endif
      ;
}

// Leaks inside third-party libraries only, each with why (tools/lsan.supp).
extern "C" const char* __lsan_default_options() {
  return "print_suppressions=0:suppressions=" DIVSCOPE_SOURCE_DIR "/tools/lsan.supp";
}

extern "C" const char* __ubsan_default_options() {
  return "exitcode=86:halt_on_error=1:print_stacktrace=1";
}
