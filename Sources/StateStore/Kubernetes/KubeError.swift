import Foundation

/// Why a call to the Kubernetes API failed.
///
/// When the server answered, ``status`` holds its `Status` body and ``kind`` follows the body's
/// `code`; otherwise the request got no usable answer (refused, dropped, timed out, TLS).
public struct KubeError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What went wrong, by the `code` of the answer's `Status`.
    public enum Kind: Sendable, Equatable {
        /// 401: the bearer token was not accepted.
        case unauthorized
        /// 403: the service account lacks the permission.
        case forbidden
        /// 404: the object (or namespace) does not exist.
        case notFound
        /// 409: a stale `resourceVersion` (Conflict) or an object that already exists (AlreadyExists).
        case conflict
        /// 415: the server does not take the body's content type (a patch type).
        case unsupportedMediaType
        /// 422: the object is invalid, for example a Secret over 1 MiB.
        case invalid
        /// 400: the request itself is malformed (a JSON patch that does not apply).
        case badRequest
        /// 5xx: the server failed; the request may or may not have been applied.
        case server
        /// Another status code.
        case other
        /// No answer: the connection was refused or dropped, or TLS failed.
        case transport
        /// No answer within the request's timeout.
        case timeout
        /// A success answer whose body is not what was asked for.
        case malformedAnswer

        /// The kind for a `Status` code.
        public init(code: Int) {
            switch code {
            case 400: self = .badRequest
            case 401: self = .unauthorized
            case 403: self = .forbidden
            case 404: self = .notFound
            case 409: self = .conflict
            case 415: self = .unsupportedMediaType
            case 422: self = .invalid
            case 500...599: self = .server
            default: self = .other
            }
        }
    }

    public var kind: Kind
    /// The request, as `METHOD resource/name` (`PATCH secrets/tsidp`).
    public var operation: String
    /// The server's `Status`, when it answered with an error.
    public var status: KubeStatus?
    /// What happened, in the server's words when it gave any.
    public var message: String

    public init(_ kind: Kind, operation: String, message: String, status: KubeStatus? = nil) {
        self.kind = kind
        self.operation = operation
        self.message = KubeError.printable(message)
        self.status = status
    }

    /// The error for an error answer.
    public init(operation: String, status: KubeStatus) {
        self.init(
            Kind(code: status.code), operation: operation,
            message: status.message ?? status.reason ?? "status \(status.code)", status: status)
    }

    /// The `Status` code, when the server answered.
    public var code: Int? { status?.code }

    /// Whether the request may have been applied although it failed: no answer, or a server
    /// error. After such a failure the caller no longer knows what the object holds.
    public var outcomeUnknown: Bool {
        switch kind {
        case .transport, .timeout, .server, .malformedAnswer: return true
        default: return false
        }
    }

    public var description: String {
        if let code = status?.code { return "\(operation): \(code) \(message)" }
        return "\(operation): \(message)"
    }

    /// `text` with control characters escaped and cut to 500 characters, so that a hostile or
    /// broken answer cannot forge log lines or flood them.
    static func printable(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars.prefix(500) {
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f || (0x80..<0xa0).contains(scalar.value) {
                    result += String(format: "\\u%04x", scalar.value)
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return text.unicodeScalars.count > 500 ? result + "…" : result
    }
}
