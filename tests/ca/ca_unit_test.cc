// Pure parts of dojang-ca: the profiles file, KISA-style subjects, fee formatting.
#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <string_view>

#include "src/ca/issuer/subject_name.h"
#include "src/ca/profiles/profile.h"
#include "src/common/errors/error.h"
#include "src/pki/korean_policy.h"

namespace ca = dojang::ca;

TEST_CASE("the shipped profiles carry the guide's fees and the documented policy OIDs", "[ca-unit]") {
  const ca::ProfileCatalog catalog = ca::loadProfiles(DOJANG_CA_SOURCE_PROFILES);
  CHECK(catalog.renewalWindowDays == 30);
  CHECK(catalog.codeLifetimeDays == 7);
  const ca::Profile& general = catalog.require("signkorea-general-personal");
  CHECK(general.brand == "SignKorea");
  CHECK(general.operatorName == "Koscom");
  CHECK(general.type == "범용 개인");
  CHECK(general.policyOid == "1.2.410.200004.5.1.1.5");
  CHECK(general.validityDays == 365);
  CHECK(general.feeKrw == 4400);
  REQUIRE(general.support);
  CHECK(general.support->phone == "1577-7337");
  CHECK(general.support->hours == "weekdays 08:00-19:00");
  CHECK(general.support->walkIn == "weekdays 09:00-17:00");
  CHECK(catalog.require("signkorea-securities").feeKrw == 0);
  CHECK(catalog.require("signkorea-tax").feeKrw == 2200);
  CHECK(catalog.require("signkorea-creditcard").feeKrw == 0);
  CHECK(catalog.require("yessign-general-personal").policyOid == "1.2.410.200005.1.1.1");
  CHECK(catalog.require("kica-tax").policyOid == "1.2.410.200004.5.2.1.5001");
  CHECK(catalog.require("crosscert-securities").policyOid == "1.2.410.200004.5.4.1.102");
  CHECK(catalog.require("tradesign-creditcard").policyOid == "1.2.410.200012.1.1.105");
  CHECK(catalog.find("nope") == nullptr);
  CHECK_THROWS_WITH(catalog.require("nope"), Catch::Contains("known profiles: signkorea-general-personal"));
}

// src/ca/profiles.toml and src/pki's table both describe the Korean policy OIDs; this keeps them
// telling the same story. A profile names the brand or the operator (KICA runs SignGate), and its
// type in fewer words ("증권·보험용" for "증권·보험 (용도제한 개인)"): every word of it, without
// the suffix 용, is in src/pki's Korean type, and 범용/개인/법인 mean the same on both sides.
TEST_CASE("every shipped profile's policy OID is known to src/pki with the same brand and type", "[ca-unit]") {
  const ca::ProfileCatalog catalog = ca::loadProfiles(DOJANG_CA_SOURCE_PROFILES);
  REQUIRE_FALSE(catalog.profiles.empty());
  for (const ca::Profile& profile : catalog.profiles) {
    INFO("profile " << profile.id << " (" << profile.policyOid << ", " << profile.type << ")");
    const auto policy = dojang::pki::findKoreanPolicy(profile.policyOid);
    REQUIRE(policy);
    CHECK((profile.brand == policy->brand || profile.brand == policy->caOperator));
    if (profile.operatorName != profile.brand) {  // the file names an operator of its own
      CHECK(profile.operatorName == policy->caOperator);
    }
    std::istringstream words(profile.type);
    std::string word;
    while (words >> word) {
      constexpr std::string_view kUseSuffix = "용";
      if (word.size() > kUseSuffix.size() && word.ends_with(kUseSuffix)) {
        word.resize(word.size() - kUseSuffix.size());
      }
      CHECK(policy->typeKo.find(word) != std::string_view::npos);
    }
    CHECK((profile.type.find("범용") != std::string::npos) == policy->generalPurpose);
    if (profile.type.find("개인") != std::string::npos) {
      CHECK(policy->holder == dojang::pki::Holder::Personal);
    }
    if (profile.type.find("법인") != std::string::npos) {
      CHECK(policy->holder == dojang::pki::Holder::Corporate);
    }
  }
}

TEST_CASE("profile file mistakes are reported with the profile and key", "[ca-unit]") {
  CHECK_THROWS_WITH(ca::parseProfiles("[[profile]]\nid = \"a\"\n", "p.toml"), Catch::Contains("profile 'a': missing"));
  CHECK_THROWS_WITH(ca::parseProfiles("[[profile]]\nid = \"a\"\nbrand = \"B\"\ntype = \"T\"\npolicy_oid = \"x.y\"\n",
                                      "p.toml"),
                    Catch::Contains("not a dotted OID"));
  CHECK_THROWS_WITH(ca::parseProfiles("[[profile]]\nid = \"a\"\nbrand = \"B\"\ntype = \"T\"\npolicy_oid = \"1.2\"\n"
                                      "fee_krw = -1\n",
                                      "p.toml"),
                    Catch::Contains("'fee_krw' must be an integer"));
  CHECK_THROWS_WITH(ca::parseProfiles("this is = = not toml", "p.toml"), Catch::Contains("p.toml"));
  CHECK_THROWS_WITH(ca::parseProfiles("", "p.toml"), Catch::Contains("no [[profile]] entries"));
}

TEST_CASE("KISA-style subjects: RFC 4514 order, slash form, default O and C", "[ca-unit]") {
  auto text = [](const std::string& subject) { return ca::subjectText(*ca::parseSubject(subject, "SignKorea")); };
  CHECK(text("cn=홍길동()0001234567890123,ou=개인,o=SignKorea,c=KR") ==
        "CN=홍길동()0001234567890123,OU=개인,O=SignKorea,C=KR");
  CHECK(text("cn=홍길동()0001234567890123,ou=개인") == "CN=홍길동()0001234567890123,OU=개인,O=SignKorea,C=KR");
  CHECK(text("/C=KR/O=yessign/CN=김철수") == "CN=김철수,O=yessign,C=KR");
  CHECK(text("cn=Kim\\, Chulsoo") == "CN=Kim\\, Chulsoo,O=SignKorea,C=KR");
  CHECK_THROWS_AS(ca::parseSubject("", "SignKorea"), dojang::Error);
  CHECK_THROWS_WITH(ca::parseSubject("cn", "SignKorea"), Catch::Contains("not name=value"));
  CHECK_THROWS_WITH(ca::parseSubject("nosuchattr=1", "SignKorea"), Catch::Contains("unknown attribute"));
  CHECK_THROWS_WITH(ca::parseSubject("cn=x,c=Korea", "SignKorea"), Catch::Contains("not allowed"));
}

TEST_CASE("fees are written the Korean way", "[ca-unit]") {
  CHECK(ca::formatKrw(4400) == "4,400 KRW");
  CHECK(ca::formatKrw(110000) == "110,000 KRW");
  CHECK(ca::formatKrw(0) == "0 KRW");
  CHECK(ca::formatFee(0) == "free");
  CHECK(ca::formatFee(2200) == "2,200 KRW");
}
