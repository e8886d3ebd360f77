import Foundation
import Logging

/// The fuzz targets by name; `TSIDP_FUZZ_TARGET` picks the one this process runs.
let targets: [String: @Sendable (Data) async -> Void] = [
    "form": FormTarget.run,
    "authorize": AuthorizeTarget.run,
    "token": TokenTarget.run,
    "register": RegisterTarget.run,
    "jwt": JWTTarget.run,
    "whois": WhoIsTarget.run,
    "status": StatusTarget.run,
    "cert-pair": CertPairTarget.run,
    "grants": GrantsTarget.run,
    "keys": KeysTarget.run,
    "clients": ClientsTarget.run,
    "dev-identities": DevIdentitiesTarget.run,
]

/// The target this process runs.
let selectedTarget: @Sendable (Data) async -> Void = {
    let name = ProcessInfo.processInfo.environment["TSIDP_FUZZ_TARGET"] ?? ""
    guard let target = targets[name] else {
        let known = targets.keys.sorted().joined(separator: ", ")
        FileHandle.standardError.write(Data("tsidp-fuzz: set TSIDP_FUZZ_TARGET to one of: \(known)\n".utf8))
        exit(2)
    }
    return target
}()

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    // Providers log security events (replayed codes, reused refresh tokens); inputs make
    // thousands of them.
    LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
    _ = selectedTarget
    _ = Shared.instance
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ bytes: UnsafeRawPointer?, _ count: Int) -> CInt {
    let input = bytes.map { Data(bytes: $0, count: count) } ?? Data()
    let target = selectedTarget
    runBlocking { await target(input) }
    return 0
}
