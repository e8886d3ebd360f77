import AnyJSON
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// A small client of the Kubernetes API: the calls tsidp's Secret store makes, in the pod's own
/// namespace, authenticated as the pod's service account.
///
/// Request conventions: `Accept: application/json` and `Authorization: Bearer <token>` on every
/// request, JSON bodies (built with `Codable`) ending in a newline, only 200 and 201 are success,
/// and an error answer's body is decoded as a `Status` whose `code` decides the ``KubeError/Kind``.
///
/// - Important: The service account's `ca.crt` is the only trusted root: system roots are not
///   consulted, so nothing but the cluster's API server can receive the token. The token is read
///   from its file again when the kubelet rotates it, and never logged.
public final class KubeClient: Sendable {
    /// The namespace of the service account, where every object lives.
    public let namespace: String
    /// The API server's base URL.
    public let apiURL: String
    /// How long one request may take.
    public let requestTimeout: Duration
    private let token: BearerTokenFile
    private let tls: TLSConfiguration

    /// Reads the service account's namespace and CA certificate and checks that its token can be
    /// read.
    ///
    /// - Throws: ``StateStoreError/Kind/configuration`` naming the file that is missing, empty or
    ///   not a PEM certificate.
    public init(configuration: KubeConfiguration) throws {
        let directory = URL(fileURLWithPath: configuration.serviceAccountDirectory, isDirectory: true)
        let namespacePath = directory.appendingPathComponent("namespace").path
        guard let namespaceData = FileManager.default.contents(atPath: namespacePath) else {
            throw StateStoreError(
                .configuration,
                "cannot read the service account's namespace \(namespacePath) (not in a pod? set TSIDP_KUBE_SERVICEACCOUNT_DIR)"
            )
        }
        let namespace = String(decoding: namespaceData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard KubeName.isLabel(namespace) else {
            throw StateStoreError(
                .configuration, "\(namespacePath) does not hold a namespace name: \"\(KubeError.printable(namespace))\""
            )
        }
        let caPath = directory.appendingPathComponent("ca.crt").path
        let roots: [NIOSSLCertificate]
        do {
            roots = try NIOSSLCertificate.fromPEMFile(caPath)
        } catch {
            throw StateStoreError(.configuration, "cannot read the cluster's CA certificate \(caPath): \(error)")
        }
        guard !roots.isEmpty else {
            throw StateStoreError(.configuration, "the cluster's CA file \(caPath) holds no certificate")
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(roots)
        tls.additionalTrustRoots = []
        tls.certificateVerification = .fullVerification
        tls.minimumTLSVersion = .tlsv12
        self.tls = tls
        self.token = BearerTokenFile(path: directory.appendingPathComponent("token").path)
        _ = try token.current()
        self.namespace = namespace
        self.apiURL = configuration.apiURL
        self.requestTimeout = configuration.requestTimeout
    }

    // MARK: Secrets

    /// `GET secrets/<name>`.
    public func getSecret(_ name: String) async throws -> KubeSecret {
        try await call(.GET, "secrets", name, as: KubeSecret.self)
    }

    /// `POST secrets`: creates `secret`; 409 (AlreadyExists) when another process created it first.
    public func createSecret(_ secret: KubeSecret) async throws -> KubeSecret {
        try await call(.POST, "secrets", nil, body: .json(secret), as: KubeSecret.self, describing: secret.name)
    }

    /// `PUT secrets/<name>`: replaces the whole Secret; 409 (Conflict) when its `resourceVersion`
    /// is no longer the current one.
    public func replaceSecret(_ secret: KubeSecret) async throws -> KubeSecret {
        guard let name = secret.name else {
            throw KubeError(.other, operation: "PUT secrets", message: "the Secret has no name")
        }
        return try await call(.PUT, "secrets", name, body: .json(secret), as: KubeSecret.self)
    }

    /// `PATCH secrets/<name>` with a JSON patch (RFC 6902), applied whole or not at all.
    public func patchSecret(_ name: String, jsonPatch: [JSONPatchOperation]) async throws -> KubeSecret {
        try await call(.PATCH, "secrets", name, body: .jsonPatch(jsonPatch), as: KubeSecret.self)
    }

    /// `PATCH secrets/<name>` with a JSON merge patch (RFC 7386): members set to `null` are removed.
    public func patchSecret(_ name: String, mergePatch: JSONValue) async throws -> KubeSecret {
        try await call(.PATCH, "secrets", name, body: .mergePatch(mergePatch), as: KubeSecret.self)
    }

    // MARK: Access reviews

    /// Whether the service account may do what `attributes` says (a SelfSubjectAccessReview).
    public func isAllowed(_ attributes: SelfSubjectAccessReview.ResourceAttributes) async throws -> Bool {
        let review = try await send(
            .POST, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            operation: "POST selfsubjectaccessreviews", body: .json(SelfSubjectAccessReview(attributes)),
            as: SelfSubjectAccessReview.self)
        return review.status?.allowed ?? false
    }

    // MARK: Events

    /// `GET events/<name>`.
    public func getEvent(_ name: String) async throws -> KubeEvent {
        try await call(.GET, "events", name, as: KubeEvent.self)
    }

    /// `POST events`.
    public func createEvent(_ event: KubeEvent) async throws -> KubeEvent {
        try await call(.POST, "events", nil, body: .json(event), as: KubeEvent.self, describing: event.metadata.name)
    }

    /// `PATCH events/<name>` with a JSON patch.
    public func patchEvent(_ name: String, jsonPatch: [JSONPatchOperation]) async throws -> KubeEvent {
        try await call(.PATCH, "events", name, body: .jsonPatch(jsonPatch), as: KubeEvent.self)
    }

    // MARK: Transport

    /// A request body and its content type.
    enum Body {
        case json(any Encodable)
        case jsonPatch([JSONPatchOperation])
        case mergePatch(JSONValue)

        var contentType: String {
            switch self {
            case .json: return "application/json"
            case .jsonPatch: return "application/json-patch+json"
            case .mergePatch: return "application/merge-patch+json"
            }
        }

        func encoded() throws -> Data {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            var data: Data
            switch self {
            case .json(let value): data = try encoder.encode(value)
            case .jsonPatch(let operations): data = try encoder.encode(operations)
            case .mergePatch(let value): data = try encoder.encode(value)
            }
            data.append(UInt8(ascii: "\n"))
            return data
        }
    }

    /// A namespaced core/v1 call: `<base>/api/v1/namespaces/<ns>/<resource>[/<name>]`.
    private func call<Answer: Decodable>(
        _ method: HTTPMethod, _ resource: String, _ name: String?, body: Body? = nil, as: Answer.Type,
        describing described: String? = nil
    ) async throws -> Answer {
        var path = "/api/v1/namespaces/\(namespace)/\(resource)"
        if let name {
            guard KubeName.isSubdomain(name) else {
                throw KubeError(
                    .other, operation: "\(method.rawValue) \(resource)",
                    message: "\"\(KubeError.printable(name))\" is not a Kubernetes object name")
            }
            path += "/\(name)"
        }
        let operation = "\(method.rawValue) \(resource)" + ((name ?? described).map { "/\($0)" } ?? "")
        return try await send(method, path, operation: operation, body: body, as: Answer.self)
    }

    private func send<Answer: Decodable>(
        _ method: HTTPMethod, _ path: String, operation: String, body: Body?, as: Answer.Type
    ) async throws -> Answer {
        let encodedBody: Data?
        do {
            encodedBody = try body?.encoded()
        } catch {
            throw KubeError(.other, operation: operation, message: "cannot encode the request: \(error)")
        }
        var (status, answer) = try await exchange(method, path, operation: operation, body: body, encoded: encodedBody)
        if status == 401, token.reload() {
            // The kubelet rotated the token since it was read: try once more with the new one.
            (status, answer) = try await exchange(method, path, operation: operation, body: body, encoded: encodedBody)
        }
        guard status == 200 || status == 201 else {
            throw KubeError(operation: operation, status: KubeStatus.decodeError(httpStatus: status, body: answer))
        }
        do {
            return try JSONDecoder().decode(Answer.self, from: Data(answer))
        } catch {
            throw KubeError(
                .malformedAnswer, operation: operation,
                message: "HTTP status \(status) with a body that does not decode")
        }
    }

    private func exchange(
        _ method: HTTPMethod, _ path: String, operation: String, body: Body?, encoded: Data?
    ) async throws -> (Int, [UInt8]) {
        let bearer: String
        do {
            bearer = try token.current()
        } catch let error as StateStoreError {
            throw KubeError(.unauthorized, operation: operation, message: error.message)
        }
        var request = HTTPClientRequest(url: apiURL + path)
        request.method = method
        request.tlsConfiguration = tls
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "Authorization", value: "Bearer \(bearer)")
        request.headers.add(name: "User-Agent", value: "tsidp")
        if let body, let encoded {
            request.headers.add(name: "Content-Type", value: body.contentType)
            request.body = .bytes(ByteBuffer(bytes: encoded))
        }
        do {
            let response = try await Self.http.execute(request, timeout: Self.timeAmount(requestTimeout))
            let bytes = try await response.body.collect(upTo: Self.maximumAnswer)
            return (Int(response.status.code), Array(buffer: bytes))
        } catch let error as HTTPClientError
            where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout
        {
            throw KubeError(
                .timeout, operation: operation, message: "no answer from \(apiURL) within \(requestTimeout)")
        } catch {
            throw KubeError(.transport, operation: operation, message: "\(apiURL): \(error)")
        }
    }

    /// The largest answer read: a Secret holds at most 1 MiB, 1.4 MiB once base64-encoded.
    private static let maximumAnswer = 4 << 20

    private static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// One client for every store in the process, never shut down: it follows no redirect (the
    /// token must not travel elsewhere) and takes its TLS configuration from each request.
    private static let http = HTTPClient(
        eventLoopGroupProvider: .singleton,
        configuration: {
            var configuration = HTTPClient.Configuration()
            configuration.redirectConfiguration = .disallow
            configuration.decompression = .disabled
            configuration.timeout = .init(connect: .seconds(10), read: .seconds(30))
            return configuration
        }())
}

/// Kubernetes object names.
enum KubeName {
    /// A DNS subdomain (RFC 1123): at most 253 characters of `[a-z0-9.-]`, starting and ending
    /// with a letter or digit. Secret, Event and most object names.
    static func isSubdomain(_ name: String) -> Bool {
        guard (1...253).contains(name.utf8.count) else { return false }
        return name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { isLabel(String($0)) }
    }

    /// A DNS label (RFC 1123): at most 63 characters of `[a-z0-9-]`, starting and ending with a
    /// letter or digit. Namespace names.
    static func isLabel(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...63).contains(bytes.count) else { return false }
        func alphanumeric(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }
        guard alphanumeric(bytes.first!), alphanumeric(bytes.last!) else { return false }
        return bytes.allSatisfy { alphanumeric($0) || $0 == UInt8(ascii: "-") }
    }
}
