// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace DirtyLog.Tests.Migration.Transport;

/// <summary>Certificates made at run time for the TLS tests (no key is ever committed): a CA, and leaves it or another CA issues.</summary>
internal sealed class TestPki : IDisposable
{
    public TestPki()
    {
        Ca = MakeCa("CN=DirtyLog test CA");
        OtherCa = MakeCa("CN=Someone else's CA");
        Destination = Issue(Ca, "CN=destination", "destination.test", server: true);
        Source = Issue(Ca, "CN=source-1", null, server: false);
    }

    public X509Certificate2 Ca { get; }

    public X509Certificate2 OtherCa { get; }

    public X509Certificate2 Destination { get; }

    public X509Certificate2 Source { get; }

    public static X509Certificate2 MakeCa(string subject)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddYears(-10), DateTimeOffset.UtcNow.AddYears(10));
    }

    /// <summary>A leaf of <paramref name="issuer"/>, valid from <paramref name="from"/> days to <paramref name="to"/> days from now.</summary>
    public static X509Certificate2 Issue(X509Certificate2 issuer, string subject, string? dnsName, bool server, int from = -1, int to = 30)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid(server ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2")], false));
        if (dnsName is not null)
        {
            var names = new SubjectAlternativeNameBuilder();
            names.AddDnsName(dnsName);
            request.CertificateExtensions.Add(names.Build());
        }

        byte[] serial = RandomNumberGenerator.GetBytes(12);
        using X509Certificate2 certificate = request.Create(issuer, DateTimeOffset.UtcNow.AddDays(from), DateTimeOffset.UtcNow.AddDays(to), serial);
        return certificate.CopyWithPrivateKey(key);
    }

    public void Dispose()
    {
        Ca.Dispose();
        OtherCa.Dispose();
        Destination.Dispose();
        Source.Dispose();
    }
}
