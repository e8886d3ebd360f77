import Crypto
import Foundation

/// Proof Key for Code Exchange (RFC 7636).
public enum PKCE {
    /// The transformation applied to the verifier.
    public enum Method: String, Sendable, Codable {
        case plain
        case s256 = "S256"
    }

    /// A verifier or challenge must be 43–128 characters of `[A-Za-z0-9-._~]`.
    public static func isWellFormed(_ value: String) -> Bool {
        let count = value.utf8.count
        guard count >= 43, count <= 128 else { return false }
        return value.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                return true
            default:
                return false
            }
        }
    }

    /// The S256 challenge of `verifier`: base64url(SHA-256(verifier)).
    public static func s256Challenge(of verifier: String) -> String {
        Base64URL.encode(SHA256.hash(data: Data(verifier.utf8)))
    }

    /// Whether `verifier` answers `challenge` under `method`.
    ///
    /// - Important: The comparison runs in constant time.
    public static func verify(verifier: String, challenge: String, method: Method) -> Bool {
        guard isWellFormed(verifier) else { return false }
        let computed = method == .s256 ? s256Challenge(of: verifier) : verifier
        return ConstantTime.equals(computed, challenge)
    }
}

/// Comparisons whose time does not depend on where the inputs differ.
public enum ConstantTime {
    public static func equals(_ a: String, _ b: String) -> Bool {
        equals(Array(a.utf8), Array(b.utf8))
    }

    /// Whether `a` and `b` are equal, in time that depends on their lengths only.
    public static func equals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference: UInt8 = 0
        let length = max(a.count, b.count)
        for i in 0..<length {
            let x = i < a.count ? a[i] : 0
            let y = i < b.count ? b[i] : 0
            difference |= x ^ y
        }
        return difference == 0 && a.count == b.count
    }
}
