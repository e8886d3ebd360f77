import AnyJSON
import Crypto
import CryptoExtras
import Foundation
import Synchronization

/// RFC 7523 client authentication with a JWT (OIDC Core §9): `private_key_jwt`, signed with a key
/// from the client's registered JWKS, and `client_secret_jwt`, a MAC under the client's secret.
public enum ClientAssertion {
    /// `client_assertion_type` of a JWT client assertion.
    public static let type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

    /// The authentication methods that present an assertion instead of a secret.
    public static let methods: Set<String> = ["private_key_jwt", "client_secret_jwt"]

    /// Signature algorithms a `private_key_jwt` assertion may use.
    public static let signatureAlgorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "EdDSA"]
    /// MAC algorithms a `client_secret_jwt` assertion may use.
    public static let macAlgorithms = ["HS256", "HS384", "HS512"]

    /// The longest an assertion may stay valid from now: its `jti` is remembered until it expires
    /// (in memory, so a restart forgets it), which bounds how long a replay could go unnoticed.
    public static let maximumLifetime: TimeInterval = 3600
    /// Clock difference tolerated between the client and tsidp.
    public static let clockSkew: TimeInterval = 60

    /// A JWT split into its parts, not yet verified.
    struct Parsed {
        var algorithm: String
        var keyID: String?
        var claims: [String: JSONValue]
        var signingInput: Data
        var signature: Data

        /// The client the assertion claims to come from (`sub`, which RFC 7523 §3 requires to be
        /// the client ID), unverified.
        var claimedClient: String? { claims["sub"]?.stringValue }
    }

    static let malformed = OAuthError(.invalidClient, "client_assertion is not a signed JWT")

    static func parse(_ text: String) throws -> Parsed {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard text.utf8.count <= 16_384, parts.count == 3, let headerData = Base64URL.decode(parts[0]),
            let claimsData = Base64URL.decode(parts[1]), let signature = Base64URL.decode(parts[2]),
            case .object(let header)? = try? JSONDecoder().decode(JSONValue.self, from: headerData),
            case .object(let claims)? = try? JSONDecoder().decode(JSONValue.self, from: claimsData),
            let algorithm = header["alg"]?.stringValue
        else { throw malformed }
        if let critical = header["crit"], critical != .null {
            throw OAuthError(
                .invalidClient, "client_assertion has critical header parameters tsidp does not understand")
        }
        return Parsed(
            algorithm: algorithm, keyID: header["kid"]?.stringValue, claims: claims,
            signingInput: Data((parts[0] + "." + parts[1]).utf8), signature: signature)
    }

    /// Checks the claims of an assertion whose signature was verified (RFC 7523 §3): `iss` and
    /// `sub` are the client, `aud` names tsidp (its issuer, token endpoint or the endpoint
    /// called), `exp` is in the future but not too far, `nbf` and `iat` are not in the future,
    /// and `jti` is present. Returns the `jti` and `exp`.
    static func checkClaims(_ parsed: Parsed, clientID: String, audiences: Set<String>, now: Date) throws -> (
        jti: String, expiresAt: Date
    ) {
        let claims = parsed.claims
        guard claims["iss"]?.stringValue == clientID, claims["sub"]?.stringValue == clientID else {
            throw OAuthError(.invalidClient, "client_assertion: iss and sub must both be the client ID")
        }
        let audience: [String]
        switch claims["aud"] {
        case .string(let single)?: audience = [single]
        case .array(let many)?: audience = many.compactMap(\.stringValue)
        default: audience = []
        }
        guard audience.contains(where: audiences.contains) else {
            throw OAuthError(.invalidClient, "client_assertion: aud must name this provider's issuer or token endpoint")
        }
        guard let exp = number(claims["exp"]) else {
            throw OAuthError(.invalidClient, "client_assertion: exp is required")
        }
        let expiresAt = Date(timeIntervalSince1970: exp)
        guard expiresAt.addingTimeInterval(clockSkew) > now else {
            throw OAuthError(.invalidClient, "client_assertion has expired")
        }
        guard expiresAt <= now.addingTimeInterval(maximumLifetime + clockSkew) else {
            throw OAuthError(.invalidClient, "client_assertion: exp is more than an hour away")
        }
        for name in ["nbf", "iat"] {
            if let value = number(claims[name]),
                Date(timeIntervalSince1970: value) > now.addingTimeInterval(clockSkew)
            {
                throw OAuthError(.invalidClient, "client_assertion: \(name) is in the future")
            }
        }
        guard let jti = claims["jti"]?.stringValue, !jti.isEmpty, jti.utf8.count <= 512 else {
            throw OAuthError(.invalidClient, "client_assertion: jti is required")
        }
        return (jti, expiresAt.addingTimeInterval(clockSkew))
    }

    /// Whether `secret` MACs `parsed` with its (HS) algorithm.
    static func macMatches(_ parsed: Parsed, secret: String) -> Bool {
        let key = SymmetricKey(data: Data(secret.utf8))
        let expected: Data
        switch parsed.algorithm {
        case "HS256": expected = Data(HMAC<SHA256>.authenticationCode(for: parsed.signingInput, using: key))
        case "HS384": expected = Data(HMAC<SHA384>.authenticationCode(for: parsed.signingInput, using: key))
        case "HS512": expected = Data(HMAC<SHA512>.authenticationCode(for: parsed.signingInput, using: key))
        default: return false
        }
        return expected.count == parsed.signature.count && ConstantTime.equals(Array(expected), Array(parsed.signature))
    }

    /// A numeric claim (NumericDate), integer or not.
    static func number(_ value: JSONValue?) -> Double? {
        switch value {
        case .int(let number)?: return Double(number)
        case .double(let number)?: return number
        default: return nil
        }
    }
}

/// A public key from a client's JWKS, with what it may verify.
struct ClientPublicKey: Sendable {
    enum Material: Sendable {
        case rsa(_RSA.Signing.PublicKey)
        case p256(P256.Signing.PublicKey)
        case ed25519(Curve25519.Signing.PublicKey)
    }

    var keyID: String?
    /// The JWK's `alg`, when it names one: then only that algorithm is accepted with this key.
    var algorithm: String?
    var material: Material

    /// Whether this key may verify `algorithm` (the JWS `alg` of an assertion): its type must
    /// match, so that no key is used with an algorithm of another family.
    func accepts(_ algorithm: String) -> Bool {
        if let own = self.algorithm, own != algorithm { return false }
        switch material {
        case .rsa: return ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"].contains(algorithm)
        case .p256: return algorithm == "ES256"
        case .ed25519: return algorithm == "EdDSA"
        }
    }

    func verifies(_ parsed: ClientAssertion.Parsed) -> Bool {
        guard accepts(parsed.algorithm) else { return false }
        let input = parsed.signingInput
        switch material {
        case .rsa(let key):
            let signature = _RSA.Signing.RSASignature(rawRepresentation: parsed.signature)
            let padding: _RSA.Signing.Padding = parsed.algorithm.hasPrefix("PS") ? .PSS : .insecurePKCS1v1_5
            switch parsed.algorithm.suffix(3) {
            case "256": return key.isValidSignature(signature, for: SHA256.hash(data: input), padding: padding)
            case "384": return key.isValidSignature(signature, for: SHA384.hash(data: input), padding: padding)
            case "512": return key.isValidSignature(signature, for: SHA512.hash(data: input), padding: padding)
            default: return false
            }
        case .p256(let key):
            guard let signature = try? P256.Signing.ECDSASignature(rawRepresentation: parsed.signature) else {
                return false
            }
            return key.isValidSignature(signature, for: input)
        case .ed25519(let key):
            return key.isValidSignature(parsed.signature, for: input)
        }
    }

    /// The signing keys of a JWKS document (`{"keys": [...]}`). Keys meant for encryption
    /// (`use: enc`), of other types or curves, or private keys are left out; a document that is
    /// not a JWKS is an error.
    static func keys(fromJWKS jwks: JSONValue) throws -> [ClientPublicKey] {
        guard case .object(let document) = jwks, case .array(let entries)? = document["keys"] else {
            throw OAuthError(.invalidClientMetadata, "jwks must be a JSON Web Key Set ({\"keys\": [...]})")
        }
        var keys: [ClientPublicKey] = []
        for case .object(let jwk) in entries {
            if let use = jwk["use"]?.stringValue, use != "sig" { continue }
            if jwk["d"] != nil {
                throw OAuthError(.invalidClientMetadata, "jwks holds a private key; register the public key only")
            }
            let keyID = jwk["kid"]?.stringValue
            let algorithm = jwk["alg"]?.stringValue
            func bytes(_ name: String) -> Data? { jwk[name]?.stringValue.flatMap(Base64URL.decode) }
            switch jwk["kty"]?.stringValue {
            case "RSA":
                guard let n = bytes("n"), let e = bytes("e"), let key = try? _RSA.Signing.PublicKey(n: n, e: e) else {
                    throw OAuthError(.invalidClientMetadata, "jwks: an RSA key is malformed or shorter than 2048 bits")
                }
                keys.append(ClientPublicKey(keyID: keyID, algorithm: algorithm, material: .rsa(key)))
            case "EC":
                guard jwk["crv"]?.stringValue == "P-256" else { continue }
                guard let x = bytes("x"), let y = bytes("y"), x.count == 32, y.count == 32,
                    let key = try? P256.Signing.PublicKey(rawRepresentation: x + y)
                else { throw OAuthError(.invalidClientMetadata, "jwks: a P-256 key is malformed") }
                keys.append(ClientPublicKey(keyID: keyID, algorithm: algorithm, material: .p256(key)))
            case "OKP":
                guard jwk["crv"]?.stringValue == "Ed25519" else { continue }
                guard let x = bytes("x"), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: x) else {
                    throw OAuthError(.invalidClientMetadata, "jwks: an Ed25519 key is malformed")
                }
                keys.append(ClientPublicKey(keyID: keyID, algorithm: algorithm, material: .ed25519(key)))
            default:
                continue
            }
        }
        return keys
    }
}

/// Remembers the `jti` of every client assertion until it expires, so that each is used once
/// (RFC 7523 §3 item 7). Held in memory: a restart forgets it, which
/// ``ClientAssertion/maximumLifetime`` bounds.
final class AssertionReplayCache: Sendable {
    private let seen = Mutex<[String: Date]>([:])
    /// The most remembered assertions; past this, expired ones are dropped first and, if none
    /// has expired, assertions are refused until some do.
    static let capacity = 100_000

    /// Records `jti` of `clientID`; false when it was seen before (or the cache is full).
    func record(clientID: String, jti: String, expiresAt: Date, now: Date) -> Bool {
        let key = clientID + " " + jti
        return seen.withLock { seen in
            if let until = seen[key], until > now { return false }
            if seen.count >= Self.capacity { seen = seen.filter { $0.value > now } }
            guard seen.count < Self.capacity else { return false }
            seen[key] = expiresAt
            return true
        }
    }
}

/// Key sets fetched from clients' `jwks_uri`, kept for a few minutes and fetched again sooner when
/// an assertion names a key the cached set lacks (the client rotated its keys). Fetches of one URI,
/// failed or not, are at least ``minimumInterval`` apart; a set that cannot be fetched again is
/// used as last fetched.
final class ClientKeySetCache: Sendable {
    struct Entry: Sendable {
        var keys: [ClientPublicKey]
        var fetchedAt: Date
        var attemptedAt: Date
    }
    private let entries = Mutex<[String: Entry]>([:])
    /// How long a fetched set is used.
    static let lifetime: TimeInterval = 300
    /// The least time between two fetches of one URI.
    static let minimumInterval: TimeInterval = 10

    func cached(_ uri: String, now: Date) -> (keys: [ClientPublicKey], fresh: Bool, mayRefetch: Bool)? {
        guard let entry = entries.withLock({ $0[uri] }) else { return nil }
        return (
            entry.keys, now.timeIntervalSince(entry.fetchedAt) < Self.lifetime,
            now.timeIntervalSince(entry.attemptedAt) >= Self.minimumInterval
        )
    }

    func store(_ keys: [ClientPublicKey], for uri: String, now: Date) {
        entries.withLock { entries in
            if entries.count >= 1_000 { entries.removeAll() }
            entries[uri] = Entry(keys: keys, fetchedAt: now, attemptedAt: now)
        }
    }

    /// Records a failed fetch: the set stays as it was (empty if there was none).
    func failed(_ uri: String, now: Date) {
        entries.withLock { entries in
            if entries.count >= 1_000 { entries.removeAll() }
            var entry = entries[uri] ?? Entry(keys: [], fetchedAt: .distantPast, attemptedAt: now)
            entry.attemptedAt = now
            entries[uri] = entry
        }
    }
}
