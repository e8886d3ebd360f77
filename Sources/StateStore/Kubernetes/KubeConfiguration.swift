import Foundation

/// Where the Kubernetes API server is and how to reach it: the in-cluster configuration, or the
/// overrides used by tests and by tsidp outside a cluster.
///
/// - `TSIDP_KUBE_API_URL`: the API server's base URL (`https://…`); otherwise
///   `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT_HTTPS` (falling back to
///   `KUBERNETES_SERVICE_PORT`) inside a pod, else `https://kubernetes.default.svc`.
/// - `TSIDP_KUBE_SERVICEACCOUNT_DIR`: a folder holding `token`, `ca.crt` and `namespace`; otherwise
///   `/var/run/secrets/kubernetes.io/serviceaccount`.
public struct KubeConfiguration: Sendable, Equatable {
    /// The service-account folder a pod gets from Kubernetes.
    public static let inClusterServiceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The API server's base URL, without a trailing slash.
    public var apiURL: String
    /// The folder with `token`, `ca.crt` and `namespace`.
    public var serviceAccountDirectory: String
    /// How long one request may take, connection included.
    public var requestTimeout: Duration

    public init(apiURL: String, serviceAccountDirectory: String, requestTimeout: Duration = .seconds(10)) {
        var url = apiURL
        while url.hasSuffix("/") { url.removeLast() }
        self.apiURL = url
        self.serviceAccountDirectory = serviceAccountDirectory
        self.requestTimeout = requestTimeout
    }

    /// The configuration `environment` describes (see the type's documentation).
    ///
    /// - Throws: ``StateStoreError/Kind/configuration`` for an API URL that is not `https://`.
    public static func resolve(environment: [String: String]) throws -> KubeConfiguration {
        let directory = nonEmpty(environment["TSIDP_KUBE_SERVICEACCOUNT_DIR"]) ?? inClusterServiceAccountDirectory
        let url: String
        if let override = nonEmpty(environment["TSIDP_KUBE_API_URL"]) {
            url = override
        } else if let host = nonEmpty(environment["KUBERNETES_SERVICE_HOST"]) {
            let port =
                nonEmpty(environment["KUBERNETES_SERVICE_PORT_HTTPS"]) ?? nonEmpty(
                    environment["KUBERNETES_SERVICE_PORT"])
                ?? "443"
            url = "https://\(host.contains(":") ? "[\(host)]" : host):\(port)"
        } else {
            url = "https://kubernetes.default.svc"
        }
        guard let parsed = URL(string: url), parsed.scheme?.lowercased() == "https", parsed.host != nil else {
            throw StateStoreError(
                .configuration,
                "the Kubernetes API URL \"\(KubeError.printable(url))\" is not an https:// URL (TSIDP_KUBE_API_URL)")
        }
        return KubeConfiguration(apiURL: url, serviceAccountDirectory: directory)
    }

    private static func nonEmpty(_ value: String?) -> String? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        return value
    }
}
