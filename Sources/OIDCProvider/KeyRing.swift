import AnyJSON
import CryptoExtras
import Foundation
import Synchronization
import StateStore

/// The provider's signing keys and the JWKS that publishes them.
///
/// Persisted as `oidc-key.json` in the Go tsidp's format (`{"kid": <uint64>, "key": "<PEM>"}`),
/// and able to import the older `{"ID": <uint64>, "Key": "<base64url PEM>"}` shape, so relying
/// parties keep the same `kid` across a move between implementations.
public final class KeyRing: Sendable {
    /// The state key of the signing key file.
    public static let stateKey = "oidc-key.json"

    private struct State: Sendable {
        var signing: SigningKey
        var published: [SigningKey]
        var jwksBytes: [UInt8]
    }

    private let state: Mutex<State>

    init(signing: SigningKey) {
        self.state = Mutex(State(signing: signing, published: [signing], jwksBytes: Self.jwks(for: [signing])))
    }

    /// Loads the key from `store`, creating and persisting one when there is none.
    ///
    /// - Important: An unreadable key file stops start-up with an error instead of being replaced,
    ///   because replacing it would silently break every relying party that cached the old `kid`.
    public static func load(from store: any StateStore) async throws -> KeyRing {
        if let data = try await store.read(stateKey), !data.isEmpty {
            return KeyRing(signing: try decodeKeyFile(data, source: store.description))
        }
        let key = try SigningKey.generate()
        try await store.write(stateKey, try encodeKeyFile(key))
        return KeyRing(signing: key)
    }

    /// The key that signs new tokens.
    public var signingKey: SigningKey { state.withLock { $0.signing } }

    /// Every key a relying party may see a signature from.
    public var publishedKeys: [SigningKey] { state.withLock { $0.published } }

    /// The serialized JWKS document, computed once per key change.
    public var jwksDocument: [UInt8] { state.withLock { $0.jwksBytes } }

    /// Finds a published key by `kid`.
    public func key(withID kid: String) -> SigningKey? {
        state.withLock { $0.published.first { $0.kid == kid } }
    }

    static func jwks(for keys: [SigningKey]) -> [UInt8] {
        let entries = keys.map { key in
            JSONText.object(["kty", "alg", "use", "kid", "n", "e"].map { ($0, .string(key.jwk[$0] ?? "")) })
        }
        return Array("{\"keys\":[\(entries.joined(separator: ","))]}".utf8)
    }

    static func encodeKeyFile(_ key: SigningKey) throws -> Data {
        guard let id = UInt64(key.kid) else { throw KeyFileError("key ID \(key.kid) is not a 64-bit number") }
        let text = "{\n  \"kid\": \(id),\n  \"key\": \(JSONText.quote(key.pkcs1PEM))\n}\n"
        return Data(text.utf8)
    }

    static func decodeKeyFile(_ data: Data, source: String) throws -> SigningKey {
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw KeyFileError("not a JSON object")
            }
            object = parsed
        } catch let error as KeyFileError {
            throw KeyFileError("\(stateKey) in \(source): \(error.message)")
        } catch {
            throw KeyFileError("\(stateKey) in \(source) is not valid JSON")
        }
        let pem: String
        let kid: String
        if let key = object["key"] as? String {
            pem = key
            kid = try kidText(object["kid"], field: "kid", raw: data, source: source)
        } else if let wrapped = object["Key"] as? String {
            guard let decoded = Base64URL.decode(wrapped) ?? Data(base64Encoded: wrapped),
                let text = String(data: decoded, encoding: .utf8)
            else {
                throw KeyFileError("\(stateKey) in \(source): Key is not base64-encoded PEM")
            }
            pem = text
            kid = try kidText(object["ID"], field: "ID", raw: data, source: source)
        } else {
            throw KeyFileError("\(stateKey) in \(source) has neither \"key\" nor \"Key\"")
        }
        do {
            let privateKey = try _RSA.Signing.PrivateKey(pemRepresentation: pem)
            guard privateKey.keySizeInBits >= 2048 else {
                throw KeyFileError("\(stateKey) in \(source): RSA key is shorter than 2048 bits")
            }
            return try SigningKey(kid: kid, privateKey: privateKey)
        } catch let error as KeyFileError {
            throw error
        } catch {
            throw KeyFileError("\(stateKey) in \(source): the key is not an RSA private key in PEM form")
        }
    }

    private static func kidText(_ value: Any?, field: String, raw: Data, source: String) throws -> String {
        // Read the digits from the text itself: a 64-bit ID does not survive a trip through Double.
        if value is NSNumber, let text = String(data: raw, encoding: .utf8),
            let match = text.firstMatch(of: try! Regex("\"\(field)\"\\s*:\\s*([0-9]+)")),
            let digits = match.output[1].substring, let id = UInt64(digits), id != 0
        {
            return String(id)
        }
        if let text = value as? String, let id = UInt64(text), id != 0 {
            return String(id)
        }
        throw KeyFileError("\(stateKey) in \(source): key ID is missing or not a positive 64-bit number")
    }
}

/// A signing key file that cannot be used.
public struct KeyFileError: Error, CustomStringConvertible, Sendable {
    public var message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}
