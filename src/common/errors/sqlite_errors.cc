// sqliteError (foreign_errors.h), in its own object so that only SQLite's users (dojang-ca)
// link libsqlite3.
#include <sqlite3.h>

#include <string>

#include "src/common/errors/foreign_errors.h"

namespace dojang {

Error sqliteError(sqlite3* database, std::string_view what, CallSite where) {
  std::string message = "SQLite: " + std::string(what);
  if (database != nullptr) {
    message += ": ";
    message += sqlite3_errmsg(database);
  }
  return Error(CKR_FUNCTION_FAILED, ErrorKind::Fatal, message, where);
}

}  // namespace dojang
