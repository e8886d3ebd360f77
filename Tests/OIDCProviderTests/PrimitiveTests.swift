import AnyJSON
import Foundation
import Testing

@testable import OIDCProvider

@Suite("Protocol primitives")
struct PrimitiveTests {
    @Test("PKCE S256 matches RFC 7636 appendix B")
    func pkceVector() {
        #expect(
            PKCE.s256Challenge(of: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
                == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        #expect(
            PKCE.verify(
                verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", method: .s256))
    }

    @Test("PKCE verifier format: 43 to 128 unreserved characters")
    func pkceFormat() {
        #expect(!PKCE.isWellFormed(String(repeating: "a", count: 42)))
        #expect(PKCE.isWellFormed(String(repeating: "a", count: 43)))
        #expect(PKCE.isWellFormed(String(repeating: "a", count: 128)))
        #expect(!PKCE.isWellFormed(String(repeating: "a", count: 129)))
        #expect(!PKCE.isWellFormed(String(repeating: "a", count: 42) + "+"))
        #expect(PKCE.isWellFormed("-._~" + String(repeating: "Z9", count: 20)))
    }

    @Test("form parsing keeps repeats and rejects malformed escapes")
    func formParsing() throws {
        let parsed = try OAuthParameters.parse(formEncoded: "a=1&resource=x&resource=y&b=hello+world%21&empty=&flag")
        #expect(parsed.all("resource") == ["x", "y"])
        #expect(try parsed.single("b") == "hello world!")
        #expect(try parsed.single("empty") == nil)
        #expect(throws: OAuthError.self) { try parsed.single("resource") }
        for bad in ["a=%", "a=%4", "a=%zz", "a=%ff%fe"] {
            #expect(throws: OAuthError.self, "\(bad)") { try OAuthParameters.parse(formEncoded: bad) }
        }
    }

    @Test("redirect parameters are appended to an existing query")
    func appending() {
        #expect(
            RedirectURI.appending([("code", "a b")], to: "https://x.example/cb") == "https://x.example/cb?code=a%20b")
        #expect(
            RedirectURI.appending([("code", "c")], to: "https://x.example/cb?t=1") == "https://x.example/cb?t=1&code=c")
    }

    @Test("a textarea of redirect URIs splits on LF, CRLF and CR, dropping blank lines")
    func splitLines() {
        let expected = ["https://a.example/cb", "https://b.example/cb", "https://c.example/cb"]
        #expect(
            RedirectURI.splitLines("https://a.example/cb\r\n https://b.example/cb \r\n\r\nhttps://c.example/cb\r\n")
                == expected)
        #expect(RedirectURI.splitLines("https://a.example/cb\nhttps://b.example/cb\rhttps://c.example/cb") == expected)
        #expect(RedirectURI.splitLines(" \r\n ").isEmpty)
    }

    @Test("HTTP Basic client credentials: whitespace around them, escapes inside, and malformed ones")
    func basicCredentials() throws {
        let form = try OAuthParameters.parse(formEncoded: "")
        let encoded = Data("client%3Aone:s%20ecret".utf8).base64EncodedString()
        for header in ["Basic \(encoded)", "basic \t \(encoded) \t", "BASIC  \(encoded)"] {
            let credentials = try PresentedCredentials(authorization: header, form: form)
            #expect(credentials.clientID == "client:one" && credentials.secret == "s ecret", "\(header)")
        }
        let notUTF8 = Data([0x61, 0x3A, 0xFF]).base64EncodedString()
        for header in [
            "Bearer \(encoded)", "Basic", "Basic !!!", "Basic \(Data("no-colon".utf8).base64EncodedString())",
            "Basic \(notUTF8)",
        ] {
            #expect(throws: OAuthError.self, "\(header)") {
                try PresentedCredentials(authorization: header, form: form)
            }
        }
    }

    @Test("base64url round trip")
    func base64url() {
        let bytes: [UInt8] = [0xfb, 0xff, 0xfe, 0x00, 0x10]
        let text = Base64URL.encode(bytes)
        #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
        #expect(Base64URL.decode(text).map(Array.init) == bytes)
        #expect(Base64URL.decode("a") == nil)
    }

    @Test("JSON text escapes what would break out of a string or a script")
    func jsonText() {
        #expect(JSONText.quote("a\"b\\c\n</script>") == "\"a\\\"b\\\\c\\n\\u003c/script\\u003e\"")
        #expect(JSONText.encode(.double(3)) == "3")
        #expect(JSONText.object([("b", .bool(true)), ("a", .null)]) == "{\"b\":true,\"a\":null}")
    }

    /// The escaping rule stated one Unicode scalar at a time, to hold the byte-level writer to.
    static func referenceQuote(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "<": out += "\\u003c"
            case ">": out += "\\u003e"
            case "&": out += "\\u0026"
            default:
                if scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    @Test("JSON strings are escaped byte for byte as the scalar-by-scalar rule says, on random text")
    func jsonTextMatchesReference() {
        // Every escape, the two separators, other three-byte characters that start with the same
        // byte (E2: "…", "€", "→"), and multi-byte text around them.
        let pool: [String] = [
            "a", "Z", "0", " ", "\"", "\\", "\n", "\r", "\t", "\u{0}", "\u{1}", "\u{1f}", "\u{7f}", "<", ">", "&",
            "\u{2028}", "\u{2029}", "\u{2026}", "\u{20ac}", "\u{2192}", "\u{2027}", "\u{202a}", "é", "ß", "日本",
            "👩‍💻", "\u{e2}", "/",
        ]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let length = Int.random(in: 0...12, using: &generator)
            let text = (0..<length).map { _ in pool.randomElement(using: &generator)! }.joined()
            #expect(JSONText.quote(text) == Self.referenceQuote(text), "\(Array(text.utf8))")
        }
        for text in pool {
            #expect(JSONText.quote(text) == Self.referenceQuote(text), "\(Array(text.utf8))")
            // Cut short: a separator's first byte at the very end of a string.
            #expect(JSONText.quote(text + "x") == Self.referenceQuote(text + "x"))
        }
        let nested: JSONValue = .object([
            "b": .array([.int(1), .double(2.5), .null, .string("\u{2028}")]), "a": .bool(false),
        ])
        #expect(JSONText.encode(nested) == #"{"a":false,"b":[1,2.5,null,"\u2028"]}"#)
        #expect(JSONText.objectBytes([("k", .string("v"))]) == Array(#"{"k":"v"}"#.utf8))
    }

    @Test("constant-time comparison")
    func constantTime() {
        #expect(ConstantTime.equals("abc", "abc"))
        #expect(!ConstantTime.equals("abc", "abd"))
        #expect(!ConstantTime.equals("abc", "abcd"))
        #expect(!ConstantTime.equals("", "a"))
    }

    @Test("extra claims merge as the Go tsidp does, deterministically")
    func extraClaimsMerge() throws {
        let rules = try CapabilityRule.parse([
            .object([
                "extraClaims": .object([
                    "groups": .array([.string("a"), .int(1)]), "tier": .string("gold"),
                    "nested": .object(["x": .int(1)]),
                ])
            ]),
            .object(["extraClaims": .object(["groups": .string("b"), "tier": .string("silver"), "flag": .bool(true)])]),
            .object(["extraClaims": .object(["groups": .array([.string("a")])])]),
        ])
        let merged = Dictionary(
            uniqueKeysWithValues: Grants(rules).extraClaims(forUserInfo: false).map { ($0.0, $0.1) })
        #expect(merged["groups"] == .array([.string("a"), .int(1), .string("b")]))
        #expect(merged["tier"] == .string("gold"))
        #expect(merged["flag"] == .bool(true))
        #expect(merged["nested"] == nil)
    }

    @Test("malformed grants are errors, never silently ignored")
    func malformedGrants() {
        for value: JSONValue in [
            .string("x"), .object(["allow_admin_ui": .string("yes")]), .object(["users": .string("*")]),
            .object(["extraClaims": .array([])]),
        ] {
            #expect(throws: CapabilityError.self) { try CapabilityRule.parse([value]) }
        }
    }

    @Test("grant booleans are OR-ed and resources need a matching user")
    func grantEvaluation() throws {
        let grants = Grants(
            try CapabilityRule.parse([
                .object(["allow_dcr": .bool(true)]),
                .object([
                    "users": .array([.string("alice@example.com")]),
                    "resources": .array([.string("https://a.example")]),
                ]),
                .object(["users": .array([.string("*")]), "resources": .array([.string("https://public.example")])]),
            ]))
        #expect(grants.allowDCR)
        #expect(!grants.allowAdminUI)
        #expect(grants.allows(resource: "https://a.example", for: "alice@example.com"))
        #expect(!grants.allows(resource: "https://a.example", for: "bob@example.com"))
        #expect(grants.allows(resource: "https://public.example", for: "bob@example.com"))
        #expect(!Grants([]).allowAdminUI)
    }
}

@Suite("Encodings against Foundation")
struct EncodingCrossCheckTests {
    @Test("base64url matches Foundation's base64 for every length and byte value")
    func base64urlMatchesFoundation() {
        for length in 0..<70 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ length) }
            let expected = Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            #expect(Base64URL.encode(bytes) == expected, "length \(length)")
            #expect(Base64URL.decode(expected).map(Array.init) == bytes)
        }
        #expect(Base64URL.encode(Array(0...255)).count == 342)
    }

    @Test("random tokens have the right length and alphabet and do not repeat")
    func randomTokens() {
        let tokens = (0..<200).map { _ in RandomToken.make(bytes: 32) }
        #expect(Set(tokens).count == 200)
        #expect(
            tokens.allSatisfy {
                $0.count == 43 && $0.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
            })
        let hex = RandomToken.hex(bytes: 16)
        #expect(hex.count == 32 && hex.allSatisfy(\.isHexDigit))
    }
}

@Suite("Constant-time comparison")
struct ConstantTimeTests {
    @Test("inputs of different lengths are never equal, whatever the difference")
    func lengths() {
        #expect(ConstantTime.equals("abc", "abc"))
        #expect(!ConstantTime.equals("abc", "abd"))
        #expect(!ConstantTime.equals([1, 2], [1, 2] + [UInt8](repeating: 0, count: 256)))
        #expect(!ConstantTime.equals([], [UInt8](repeating: 0, count: 512)))
        #expect(!ConstantTime.equals("", "\u{0}"))
    }
}
