// SPDX-License-Identifier: BSL-1.0
// Win32 backend of spawn.hpp.
#ifndef CHILDPROC_DETAIL_SPAWN_WIN32_HPP
#define CHILDPROC_DETAIL_SPAWN_WIN32_HPP

#include "ipc.hpp"
#include "os.win32.hpp"
#include "utf.hpp"

#include <algorithm>  // sort, unique
#include <cstring>    // memcpy for lpReserved2
#include <io.h>       // _get_osfhandle for inherit past stderr

namespace childproc::inline v0::detail {

inline std::wstring to_wide(const std::u16string& s) { return std::wstring(s.begin(), s.end()); }

inline result<std::wstring> widen(std::string_view s, const std::string& context) {
  auto w = utf8_to_utf16(s);
  if (!w) return error(errc::invalid_argument, context + ": " + w.error().message());
  return to_wide(*w);
}

inline std::vector<std::string> parent_environment_native() {
  std::vector<std::string> env;
  wchar_t* block = ::GetEnvironmentStringsW();
  for (const wchar_t* p = block; p && *p; p += std::wcslen(p) + 1) {
    std::u16string entry(p, p + std::wcslen(p));
    if (entry[0] != u'=') env.push_back(utf16_to_utf8(entry));  // skip the hidden "=C:=C:\dir" entries
  }
  if (block) ::FreeEnvironmentStringsW(block);
  return env;
}

inline std::string default_shell_native(const std::vector<std::string>& env) {
  const std::string* comspec = env_find(env, "ComSpec", true);
  return comspec && !env_value(*comspec).empty() ? std::string(env_value(*comspec)) : "cmd.exe";
}

inline bool is_file_win32(const std::wstring& path) {
  const DWORD a = ::GetFileAttributesW(path.c_str());
  return a != INVALID_FILE_ATTRIBUTES && !(a & FILE_ATTRIBUTE_DIRECTORY);
}

// PATH + PATHEXT search in the child's environment (the parent's PATH when it has none).
// A name with a directory part is only looked up there; with an extension it is tried as is.
inline auto find_program_win32(const spawn_request& req, const std::vector<std::string>& parent_env)
    -> result<std::string> {
  const std::string& prog = req.program;
  const auto sep = prog.find_last_of("\\/:");
  const bool has_dir = sep != std::string::npos;
  const bool has_ext = prog.find('.', has_dir ? sep + 1 : 0) != std::string::npos;
  const std::string* ext_entry = env_find(req.env, "PATHEXT", true);
  std::string exts = ext_entry ? std::string(env_value(*ext_entry)) : ".COM;.EXE;.BAT;.CMD";
  std::vector<std::string> suffixes;
  if (has_ext) suffixes.emplace_back();
  for (std::size_t start = 0; start <= exts.size();) {
    const auto end = std::min(exts.find(';', start), exts.size());
    if (end > start) suffixes.push_back(exts.substr(start, end - start));
    start = end + 1;
  }
  std::vector<std::string> dirs;
  if (has_dir) {
    dirs.emplace_back();
  } else {
    const std::string* path = env_find(req.env, "PATH", true);
    if (!path) path = env_find(parent_env, "PATH", true);
    const std::string_view list = path ? env_value(*path) : std::string_view();
    for (std::size_t start = 0; start <= list.size();) {
      const auto end = std::min(list.find(';', start), list.size());
      if (end > start) dirs.emplace_back(list.substr(start, end - start));
      start = end + 1;
    }
  }
  for (const auto& dir : dirs) {
    std::string base = dir.empty() ? prog : dir + (dir.back() == '\\' || dir.back() == '/' ? "" : "\\") + prog;
    if (!req.opts->cwd.empty() && !(base.size() > 1 && (base[1] == ':' || base[0] == '\\' || base[0] == '/')))
      base = req.opts->cwd + "\\" + base;
    for (const auto& suffix : suffixes) {
      auto wide = widen(base + suffix, req.context);
      if (!wide) return std::move(wide).error();
      if (is_file_win32(*wide)) return base + suffix;
    }
  }
  return errno_error(ENOENT, req.context);
}

// The block CreateProcessW takes: sorted without case as Windows requires, UTF-16, double NUL.
// A replaced environment keeps the variables Windows itself needs, as libuv does.
inline auto make_env_block_win32(const spawn_request& req, const std::vector<std::string>& parent_env)
    -> result<std::wstring> {
  std::vector<std::string> env = req.env;
  if (!req.opts->env.inherit)
    for (const char* name : {"HOMEDRIVE", "HOMEPATH", "LOGONSERVER", "PATH", "SYSTEMDRIVE", "SYSTEMROOT", "TEMP",
                             "USERDOMAIN", "USERNAME", "USERPROFILE", "WINDIR"})
      if (!env_find(env, name, true))
        if (const std::string* e = env_find(parent_env, name, true)) env.push_back(*e);
  auto upper_key = [](const std::string& e) {
    std::string k(env_key(e));
    for (char& c : k) c = ascii_upper(c);
    return k;
  };
  std::stable_sort(env.begin(), env.end(), [&](const std::string& a, const std::string& b) { return upper_key(a) < upper_key(b); });
  std::wstring block;
  for (const auto& e : env) {
    auto w = widen(e, req.context);
    if (!w) return std::move(w).error();
    block += *w;
    block += L'\0';
  }
  if (env.empty()) block += L'\0';
  block += L'\0';
  return block;
}

// The child's handles: inheritable duplicates made for this one CreateProcessW, closed after it.
struct stdio_handles_win32 {
  std::vector<unique_handle> parent;  // per index
  std::vector<unique_handle> child;   // per index, inheritable (invalid where none)
};

inline auto inheritable_copy_win32(HANDLE h, const std::string& where) -> result<unique_handle> {
  HANDLE dup = nullptr;
  if (!::DuplicateHandle(::GetCurrentProcess(), h, ::GetCurrentProcess(), &dup, 0, TRUE, DUPLICATE_SAME_ACCESS))
    return last_win32_error(where + " DuplicateHandle");
  return unique_handle(dup);
}

inline auto open_file_win32(const std::string& path, stdio_spec::kind how, const std::string& where)
    -> result<unique_handle> {
  auto wide = widen(path, where);
  if (!wide) return std::move(wide).error();
  SECURITY_ATTRIBUTES inherit{sizeof(SECURITY_ATTRIBUTES), nullptr, TRUE};
  const DWORD access = how == stdio_spec::kind::file_read     ? GENERIC_READ
                       : how == stdio_spec::kind::file_append ? FILE_APPEND_DATA | SYNCHRONIZE
                                                              : GENERIC_WRITE;
  const DWORD disposition = how == stdio_spec::kind::file_read     ? OPEN_EXISTING
                            : how == stdio_spec::kind::file_append ? OPEN_ALWAYS
                                                                   : CREATE_ALWAYS;
  HANDLE h = ::CreateFileW(wide->c_str(), access, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, &inherit,
                           disposition, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (h == INVALID_HANDLE_VALUE) return last_win32_error(where + " open " + path);
  return unique_handle(h);
}

inline auto plan_stdio_win32(const spawn_request& req) -> result<stdio_handles_win32> {
  const auto& specs = req.opts->stdio;
  const std::size_t count = std::max<std::size_t>(specs.size(), 3);
  stdio_handles_win32 plan;
  plan.parent.resize(count);
  plan.child.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    const stdio_spec spec = i < specs.size() ? specs[i] : pipe;
    const std::string where = req.context + ": stdio[" + std::to_string(i) + "]";
    HANDLE source = nullptr;
    switch (spec.how) {
      case stdio_spec::kind::pipe:
      case stdio_spec::kind::socket_pipe:
      case stdio_spec::kind::ipc: {
        auto p = spec.how == stdio_spec::kind::ipc           ? create_channel_native()
                 : i >= 3                                     ? create_duplex_native()
                 : spec.how == stdio_spec::kind::socket_pipe ? create_socket_pipe_native(i == 0)
                                                              : create_pipe_native(i == 0);
        if (!p) return error(p.error().code(), where + " " + p.error().context());
        plan.parent[i] = std::move(p->parent);
        auto c = inheritable_copy_win32(p->child.get(), where);
        if (!c) return std::move(c).error();
        plan.child[i] = std::move(*c);
        continue;
      }
      case stdio_spec::kind::inherit:
        source = i == 0 ? ::GetStdHandle(STD_INPUT_HANDLE)
                 : i == 1 ? ::GetStdHandle(STD_OUTPUT_HANDLE)
                 : i == 2 ? ::GetStdHandle(STD_ERROR_HANDLE)
                          : reinterpret_cast<HANDLE>(::_get_osfhandle(static_cast<int>(i)));
        break;
      case stdio_spec::kind::ignore:
        if (i < 3) {
          auto nul = open_file_win32("NUL", i == 0 ? stdio_spec::kind::file_read : stdio_spec::kind::file_write, where);
          if (!nul) return std::move(nul).error();
          plan.child[i] = std::move(*nul);
        }
        continue;
      case stdio_spec::kind::file_read:
      case stdio_spec::kind::file_write:
      case stdio_spec::kind::file_append: {
        auto f = open_file_win32(spec.path, spec.how, where);
        if (!f) return std::move(f).error();
        plan.child[i] = std::move(*f);
        continue;
      }
      case stdio_spec::kind::handle:
        source = spec.fd;
        if (!source || source == INVALID_HANDLE_VALUE) return errno_error(EBADF, where + " handle");
        break;
      case stdio_spec::kind::same_as_stdout:
        source = plan.child[1] ? plan.child[1].get() : ::GetStdHandle(STD_OUTPUT_HANDLE);
        break;
    }
    if (!source || source == INVALID_HANDLE_VALUE) continue;  // the parent has none: the child gets none
    auto c = inheritable_copy_win32(source, where);
    if (!c) {
      if (spec.how == stdio_spec::kind::inherit) continue;
      return std::move(c).error();
    }
    plan.child[i] = std::move(*c);
  }
  return plan;
}

inline auto spawn_native(const spawn_request& req) -> result<spawned> {
  const options& o = *req.opts;
  if (o.uid || o.gid) return errno_error(ENOTSUP, req.context + ": uid and gid are POSIX options");
  const auto parent_env = parent_environment_native();
  auto path = find_program_win32(req, parent_env);
  if (!path) return std::move(path).error();
  std::wstring cwd;
  if (!o.cwd.empty()) {
    auto w = widen(o.cwd, req.context);
    if (!w) return std::move(w).error();
    const DWORD a = ::GetFileAttributesW(w->c_str());
    if (a == INVALID_FILE_ATTRIBUTES) return errno_error(ENOENT, req.context + ": cwd " + o.cwd);
    if (!(a & FILE_ATTRIBUTE_DIRECTORY)) return errno_error(ENOTDIR, req.context + ": cwd " + o.cwd);
    cwd = std::move(*w);
  }
  for (std::size_t i = 1; i < req.argv.size(); ++i)
    if (auto w = utf8_to_utf16(req.argv[i]); !w)
      return error(errc::invalid_argument, req.context + ": argument " + std::to_string(i) + " " + w.error().message());
  // A batch file runs through cmd.exe, with its arguments made safe for cmd.exe or refused.
  std::string application = *path;
  result<std::string> line = std::string();
  if (is_batch_file(*path) && !req.verbatim) {
    application = default_shell_native(parent_env);
    if (application.find_first_of("\\/") == std::string::npos) {
      spawn_request shell = req;
      shell.program = application;
      auto found = find_program_win32(shell, parent_env);
      if (!found) return std::move(found).error();
      application = *found;
    }
    line = make_batch_command_line(application, *path, req.argv);
  } else {
    line = make_command_line(req.argv, req.verbatim);
  }
  if (!line) return error(line.error().code(), req.context + ": " + line.error().message());
  auto wide_app = widen(application, req.context);
  auto wide_line = widen(*line, req.context);
  if (!wide_app) return std::move(wide_app).error();
  if (!wide_line) return std::move(wide_line).error();
  if (wide_line->size() >= 32767) return errno_error(E2BIG, req.context);
  auto env = make_env_block_win32(req, parent_env);
  if (!env) return std::move(env).error();
  if (o.stdio.size() > 256)  // the C runtime's table must fit lpReserved2's 16-bit size (libuv's limit)
    return errno_error(EINVAL, req.context + ": more than 256 stdio entries");
  auto plan = plan_stdio_win32(req);
  if (!plan) return std::move(plan).error();

  std::vector<HANDLE> inherited;
  for (auto& h : plan->child)
    if (h && std::find(inherited.begin(), inherited.end(), h.get()) == inherited.end()) inherited.push_back(h.get());
  SIZE_T attr_size = 0;
  ::InitializeProcThreadAttributeList(nullptr, 1, 0, &attr_size);
  std::vector<unsigned char> attr_storage(attr_size);
  auto attrs = reinterpret_cast<LPPROC_THREAD_ATTRIBUTE_LIST>(attr_storage.data());
  if (!::InitializeProcThreadAttributeList(attrs, 1, 0, &attr_size))
    return last_win32_error(req.context + ": InitializeProcThreadAttributeList");
  struct attr_guard {
    LPPROC_THREAD_ATTRIBUTE_LIST a;
    ~attr_guard() { ::DeleteProcThreadAttributeList(a); }
  } guard{attrs};
  if (!inherited.empty() && !::UpdateProcThreadAttribute(attrs, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, inherited.data(),
                                                         inherited.size() * sizeof(HANDLE), nullptr, nullptr))
    return last_win32_error(req.context + ": UpdateProcThreadAttribute");

  STARTUPINFOEXW si{};
  si.StartupInfo.cb = sizeof si;
  si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
  si.StartupInfo.hStdInput = plan->child[0] ? plan->child[0].get() : nullptr;
  si.StartupInfo.hStdOutput = plan->child[1] ? plan->child[1].get() : nullptr;
  si.StartupInfo.hStdError = plan->child[2] ? plan->child[2].get() : nullptr;
  si.lpAttributeList = attrs;
  std::vector<BYTE> crt_table;
  // fd 3+ go the C runtime's way (lpReserved2, as libuv and Node do): a count, one flag byte
  // per descriptor, then the handles, unaligned.
  if (plan->child.size() > 3) {
    const int n = static_cast<int>(plan->child.size());
    crt_table.resize(sizeof(int) + static_cast<std::size_t>(n) * (1 + sizeof(HANDLE)));
    std::memcpy(crt_table.data(), &n, sizeof n);
    for (int i = 0; i < n; ++i) {
      const auto& h = plan->child[static_cast<std::size_t>(i)];
      const BYTE flags = h ? (::GetFileType(h.get()) == FILE_TYPE_PIPE ? 0x09 : 0x01) : 0;  // FOPEN, FPIPE
      crt_table[sizeof(int) + static_cast<std::size_t>(i)] = flags;
      const HANDLE value = h ? h.get() : INVALID_HANDLE_VALUE;
      std::memcpy(crt_table.data() + sizeof(int) + static_cast<std::size_t>(n) + static_cast<std::size_t>(i) * sizeof(HANDLE),
                  &value, sizeof value);
    }
    si.StartupInfo.cbReserved2 = static_cast<WORD>(crt_table.size());
    si.StartupInfo.lpReserved2 = crt_table.data();
  }
  DWORD flags = CREATE_UNICODE_ENVIRONMENT | EXTENDED_STARTUPINFO_PRESENT | CREATE_SUSPENDED;
  if (o.detached) flags |= DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP;
  else if (o.new_process_group) flags |= CREATE_NEW_PROCESS_GROUP;
  if (o.windows_hide) {
    si.StartupInfo.dwFlags |= STARTF_USESHOWWINDOW;
    si.StartupInfo.wShowWindow = SW_HIDE;
    flags |= CREATE_NO_WINDOW;
  }
  PROCESS_INFORMATION pi{};
  if (!::CreateProcessW(wide_app->c_str(), wide_line->data(), nullptr, nullptr, inherited.empty() ? FALSE : TRUE, flags,
                        env->data(), cwd.empty() ? nullptr : cwd.c_str(), &si.StartupInfo, &pi))
    return last_win32_error(req.context);
  unique_handle thread(pi.hThread);
  spawned out;
  out.child.pid = pi.dwProcessId;
  out.child.handle.reset(pi.hProcess);
  // Suspended until it is in its job, so no grandchild can start outside it. A detached child
  // gets no job (as in Node): it must outlive us.
  if (!o.detached) {
    const char* step = "CreateJobObjectW";
    DWORD code = 0;
    if (HANDLE job = ::CreateJobObjectW(nullptr, nullptr)) {
      out.child.job.reset(job);
      JOBOBJECT_EXTENDED_LIMIT_INFORMATION info{};
      info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_BREAKAWAY_OK;
      step = "SetInformationJobObject";
      bool in_job = ::SetInformationJobObject(job, JobObjectExtendedLimitInformation, &info, sizeof info);
      if (in_job) {
        step = "AssignProcessToJobObject";
        in_job = ::AssignProcessToJobObject(job, pi.hProcess);
      }
      if (!in_job) {
        code = ::GetLastError();
        out.child.job.reset();
      }
    } else {
      code = ::GetLastError();
    }
    // An old system without nested jobs: the child runs unjobbed, unless it must die with us.
    if (!out.child.job && o.kill_on_parent_exit) {
      ::TerminateProcess(pi.hProcess, 1);
      ::WaitForSingleObject(pi.hProcess, INFINITE);
      return win32_error(code, req.context + ": kill_on_parent_exit: " + step);
    }
  }
  ::ResumeThread(pi.hThread);
  out.stdio = std::move(plan->parent);
  return out;
}

}  // namespace childproc::inline v0::detail

#endif
