// Service's handlers for sessions and logins: opening and closing sessions, C_Login (user, SO
// and context-specific), C_Logout, C_InitPIN and C_SetPIN.
#include <string>

#include "src/common/errors/error.h"
#include "src/common/wire/wire_limits.h"
#include "src/daemon/log.h"
#include "src/daemon/service.h"
#include "src/daemon/token_access.h"

namespace dojang::daemon {

namespace {

// What a PIN change or reset asks for, with the PIN's state for its retries.
PromptNeed pinChangeNeed(TokenState& token, PromptSecret secret, CK_USER_TYPE user, const char* operation) {
  PromptNeed need;
  need.secret = secret;
  need.operation = operation;
  need.user = user;
  need.tokenLabel = token.description().label;
  const auto states = token.token().pinState();
  need.pin = user == CKU_SO ? states.so : states.user;
  return need;
}

}  // namespace

void Service::OpenSession(CallContext& context, const wire::OpenSessionRequest& in,
                          wire::OpenSessionReply& out) {
  if ((in.flags & CKF_SERIAL_SESSION) == 0) {
    fail(CKR_SESSION_PARALLEL_NOT_SUPPORTED, "sessions must be serial");
  }
  auto token = m_slots.tokenIn(in.slot);
  auto& client = *context.client;
  if (token->loginOf(client.number()) == CKU_SO && (in.flags & CKF_RW_SESSION) == 0) {
    fail(CKR_SESSION_READ_WRITE_SO_EXISTS, "an SO session is open");
  }
  auto session = std::make_shared<ClientSession>();
  session->handle = nextSessionHandle();
  session->slot = in.slot;
  session->flags = in.flags & (CKF_SERIAL_SESSION | CKF_RW_SESSION);
  session->backend = token->openSession();
  session->token = std::move(token);
  out.session = client.addSession(std::move(session));
}

void Service::CloseSession(CallContext& context, const wire::SessionRequest& in, wire::Empty&) {
  auto session = context.client->takeSession(in.session);
  closeSession(*context.client, *session);
}

void Service::CloseAllSessions(CallContext& context, const wire::SlotRequest& in, wire::Empty&) {
  (void)m_slots.slotDescription(in.slot);  // CKR_SLOT_ID_INVALID for unknown slots
  for (auto& session : context.client->takeSessions(in.slot)) {
    closeSession(*context.client, *session);
  }
}

void Service::GetSessionInfo(CallContext& context, const wire::SessionRequest& in,
                             wire::GetSessionInfoReply& out) {
  auto session = context.client->session(in.session);
  const auto login = session->token->loginOf(context.client->number());
  const bool readWrite = (session->flags & CKF_RW_SESSION) != 0;
  out.info.slot = session->slot;
  out.info.flags = session->flags;
  if (login == CKU_SO) {
    out.info.state = CKS_RW_SO_FUNCTIONS;
  } else if (login == CKU_USER) {
    out.info.state = readWrite ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
  } else {
    out.info.state = readWrite ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
  }
}

void Service::Login(CallContext& context, const wire::LoginRequest& in, wire::Empty&) {
  if (in.userType != CKU_USER && in.userType != CKU_SO) {
    fail(CKR_USER_TYPE_INVALID, "use LoginContextSpecific for CKU_CONTEXT_SPECIFIC");
  }
  auto session = context.client->session(in.session);
  if (in.pin.size() > wire::kMaxPinBytes) {
    fail(CKR_PIN_LEN_RANGE, "PIN too long");
  }
  if (in.userType == CKU_SO && context.client->hasReadOnlySessionOn(session->slot)) {
    // PKCS#11: an SO cannot log in while the application has read-only sessions with the token.
    fail(CKR_SESSION_READ_ONLY_EXISTS, "SO login needs read-write sessions only");
  }
  // A NULL PIN: a prompt-mode token's protected authentication path, where dojangd asks. On an
  // application-mode token without a PIN pad of its own dojangd asks too, when it has a prompt
  // (`dojang pin unblock` logs the SO in so); a token with its own PIN pad asks on the device.
  const auto prompt = in.pinGiven ? PromptAccess{} : promptAccess(context);
  const bool dojangdAsks =
      !in.pinGiven &&
      (session->token->pinMode() == PinMode::Prompt ||
       (prompt.ask && (session->token->description().flags & CKF_PROTECTED_AUTHENTICATION_PATH) == 0));
  if (dojangdAsks) {
    if (!prompt.ask) {
      fail(CKR_FUNCTION_FAILED, "this dojangd has no PIN prompt; give the PIN to C_Login");
    }
    PromptNeed need;
    need.operation = in.userType == CKU_SO ? "log in as security officer" : "log in";
    need.user = in.userType;
    need.tokenLabel = session->token->description().label;
    session->token->promptLogin(
        context.client->number(), in.userType,
        [&](const token::PinState& pin) {
          need.pin = pin;
          return prompt.ask(need);
        },
        prompt.stillWaiting);
  } else {
    const SecureBytes pin(in.pin);
    session->token->login(context.client->number(), in.userType, in.pinGiven ? &pin : nullptr);
  }
  logInfo("client " + std::to_string(context.client->number()) + " (" + context.client->program() +
          ") logged in to slot " + std::to_string(session->slot));
}

void Service::LoginContextSpecific(CallContext& context, const wire::LoginRequest& in, wire::Empty&) {
  auto session = context.client->session(in.session);
  TokenAccess(*context.client, *session).requireLogin();
  if (in.pin.size() > wire::kMaxPinBytes) {
    fail(CKR_PIN_LEN_RANGE, "PIN too long");
  }
  // Kept for the operation it authorises, which gets it explicitly; the token checks it there.
  std::lock_guard lock(session->mutex);
  session->contextLogin = PendingContextLogin{in.pinGiven, SecureBytes(in.pin)};
}

void Service::Logout(CallContext& context, const wire::SessionRequest& in, wire::Empty&) {
  auto session = context.client->session(in.session);
  session->token->logout(context.client->number());
}

// C_InitPIN and C_SetPIN: PKCS#11 tokens never accept an empty PIN, so an empty one (or NULL, which
// the module sends as empty) means "let dojangd ask" when this dojangd has a prompt, in either PIN
// mode. The new PIN is typed twice. Without a prompt the empty PIN goes to the token as before.
void Service::InitPin(CallContext& context, const wire::InitPinRequest& in, wire::Empty&) {
  auto session = context.client->session(in.session);
  if (session->token->loginOf(context.client->number()) != CKU_SO) {
    fail(CKR_USER_NOT_LOGGED_IN, "InitPIN needs the SO logged in");
  }
  const auto prompt = promptAccess(context);
  SecureBytes pin(in.pin);
  if (pin.empty() && prompt.ask) {
    pin = prompt.ask(pinChangeNeed(*session->token, PromptSecret::NewPin, CKU_USER, "reset the PIN"));
  }
  std::lock_guard lock(session->mutex);
  const DescriptionRefresh refresh(*session->token);
  session->backend->initPin(pin);
  logInfo("client " + std::to_string(context.client->number()) + " (" + context.client->program() +
          ") set a new user PIN on slot " + std::to_string(session->slot));
}

void Service::SetPin(CallContext& context, const wire::SetPinRequest& in, wire::Empty&) {
  auto session = context.client->session(in.session);
  if ((session->flags & CKF_RW_SESSION) == 0) {
    fail(CKR_SESSION_READ_ONLY, "SetPIN needs a read-write session");
  }
  // PKCS#11: the PIN of the user logged in, the user's PIN when nobody is.
  const CK_USER_TYPE user = session->token->loginOf(context.client->number()) == CKU_SO ? CKU_SO : CKU_USER;
  const char* operation = user == CKU_SO ? "change the SO PIN" : "change the PIN";
  const auto prompt = promptAccess(context);
  SecureBytes oldPin(in.oldPin);
  if (oldPin.empty() && prompt.ask) {
    oldPin = prompt.ask(pinChangeNeed(*session->token, PromptSecret::CurrentPin, user, operation));
  }
  SecureBytes newPin(in.newPin);
  if (newPin.empty() && prompt.ask) {
    newPin = prompt.ask(pinChangeNeed(*session->token, PromptSecret::NewPin, user, operation));
  }
  std::lock_guard lock(session->mutex);
  const DescriptionRefresh refresh(*session->token);
  session->backend->setPin(oldPin, newPin);
  session->token->pinChanged(newPin);
}

}  // namespace dojang::daemon
